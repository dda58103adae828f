"""An Application Load Balancer set up for sticky WebSocket traffic, new or reused.

Three ways to use :class:`StickyWebSocketLoadBalancer`:

* **New load balancer** (default): the ALB with the settings' attributes (and, with
  ``capacity_reservation_lcu``, that many reserved LCUs as ``MinimumLoadBalancerCapacity``), an encrypted log bucket
  for access and connection logs, an HTTPS listener (TLS 1.3 policy) with an HTTP->HTTPS
  redirect, the ``Upgrade: websocket`` rule and the target group.
* **Existing load balancer** (``load_balancer=``): the listeners, rule and target group are added
  to it. When it is an ``ApplicationLoadBalancer`` built in the same app its attributes are set
  from the settings; an imported one is left alone and a warning lists the values it needs.
* **Existing listener** (``listener=``): only the target group and the ``Upgrade: websocket``
  listener rule are created; the listener's default action and certificates stay the owner's.

Polling transports (``polling_paths=``, e.g. :data:`SOCKET_IO_PATHS`): Socket.IO, SockJS and the
like start on HTTP long polling, whose requests carry no ``Upgrade`` header, and every request of
one session must reach the task that created it (Socket.IO answers 400 "Session ID unknown"
elsewhere). A second listener rule (``path-pattern``, priority ``polling_rule_priority``, by default
the upgrade rule's + 1) forwards those paths to the SAME sticky target group, so polling requests
and the later upgrade share one cookie and one task, also on a shared listener whose default action
belongs to another application. The settings rules apply as for WebSocket clients: stickiness must
be on and outlive the client's reconnect backoff (``stickiness_duration_s >= reconnect_cap_s``:
set ``reconnect_cap_s`` to Socket.IO's ``reconnectionDelayMax``), and ``ping_interval_s`` (set it
to Socket.IO's ``pingInterval``) must stay within the idle timeout, which also bounds a long poll.

Blue/green, linear and canary (``deployment_strategy`` other than ``rolling``): ECS shifts
traffic by rewriting ONE listener rule, the production rule, to a weighted forward between the
target group and an alternate (green) one; the listener's default action is never shifted. So the
layout changes (a rolling deployment keeps the one above):

* :attr:`alternate_target_group`: a second target group with exactly the same attributes
  (stickiness, deregistration delay, health check, HTTP/1.1, ip targets);
* :attr:`production_rule` (priority ``upgrade_rule_priority + 1``): every path the service serves
  (``production_paths``, default ``/*``: the WebSocket handshake, the health path, polling, any
  plain HTTP request), a forward with ONLY forward actions (ECS fails a deployment on redirect,
  fixed-response or authenticate actions) over the target group (weight 100) and the alternate
  one (weight 0), and no target-group stickiness (``AWSALBTG`` would beat the weights: clients
  would keep reaching blue, then get 503 once it is gone). Target stickiness (``AWSALB``) inside
  each target group stays. No separate ``Upgrade: websocket`` or polling rule is made: ECS would
  not shift them;
* :attr:`test_rule` (priority ``upgrade_rule_priority``): requests with the query string
  ``stickyws-lane=test`` (:data:`TEST_LANE_QUERY`; a query string because a browser cannot add a
  header to a WebSocket handshake) go to the alternate target group, where ECS registers green
  before any production traffic moves: ``wss://HOST/ws?stickyws-lane=test``
  (:attr:`test_websocket_url`).

On a listener given with ``listener=`` (shared with other applications) a ``/*`` rule would take
their traffic, so ``production_paths`` must name the service's paths there (at most
:data:`MAX_PRODUCTION_PATHS`; the test rule then matches them too). ``attach`` hands the alternate
target group, both rules and the service's infrastructure role to ECS (``ecs.AlternateTarget``).

Routing decision: on a listener this construct creates, BOTH the ``Upgrade: websocket`` rule
(priority 1) and the default action forward to the target group. Plain HTTP requests (the health
path, polling fallbacks, a first request that primes the ``AWSALB`` cookie before the upgrade)
must reach the same tasks with the same stickiness, so a fixed 426 default would break them. The
rule keeps WebSocket routing explicit and is what makes the construct work on a shared listener
whose default action belongs to another application.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final

from aws_cdk import Annotations, Aws, CfnCondition, CfnMapping, Duration, Fn, RemovalPolicy, Stack, Token, region_info
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_s3 as s3
from constructs import Construct

from constructs_lib.nag import acknowledge
from constructs_lib.service import WebSocketFargateService
from constructs_lib.settings_check import SettingsMismatchError, apply_settings
from stickyws.protocol import WS_PATH
from stickyws.settings import Scope, Settings, SettingsError, render_value
from stickyws.settings.aws_names import LOAD_BALANCER_ATTRIBUTES

#: Annotation id of the synth warning that HTTP-only mode adds.
HTTP_ONLY_WARNING_ID: Final = "stickyws:load-balancer:http-only"
#: Annotation id of the warning about an imported load balancer whose attributes are not managed.
UNMANAGED_ATTRIBUTES_WARNING_ID: Final = "stickyws:load-balancer:unmanaged-attributes"
#: Header condition of the WebSocket listener rule (ALB header matching is case-insensitive).
UPGRADE_HEADER: Final = ("Upgrade", "websocket")
#: ``polling_paths`` for Socket.IO (Engine.IO's default path ``/socket.io/``).
SOCKET_IO_PATHS: Final = ("/socket.io/*",)
#: Values one ALB ``path-pattern`` condition may hold, and the length and characters of each.
MAX_POLLING_PATHS: Final = 5
MAX_PATH_PATTERN_LENGTH: Final = 128
_PATH_PATTERN_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.$/~\"'@:+&*?")
#: Query-string condition (key, value) of the test listener rule of a blue/green, linear or canary layout.
TEST_LANE_QUERY: Final = ("stickyws-lane", "test")
#: The production rule's default paths on a listener this construct creates: every request.
ALL_PATHS: Final = ("/*",)
#: Paths a production rule may name: the test rule adds its query string to them, and an ALB rule holds 5 values.
MAX_PRODUCTION_PATHS: Final = 4
#: Weights of the production rule as coded: the target group takes every request, the alternate none.
PRODUCTION_WEIGHTS: Final = (100, 0)
#: Prefixes of the two log streams in the log bucket.
ACCESS_LOG_PREFIX: Final = "access"
CONNECTION_LOG_PREFIX: Final = "connection"

#: Service principal that delivers ALB logs in the regions opened since August 2022.
LOG_DELIVERY_SERVICE_PRINCIPAL: Final = "logdelivery.elasticloadbalancing.amazonaws.com"

HTTPS_PORT: Final = 443
HTTP_PORT: Final = 80

#: The parts of a deployment this construct builds (the rules it runs).
LOAD_BALANCER_PARTS: Final = frozenset({Scope.LOAD_BALANCER})
#: The parts ``attach`` judges: the load balancer's values with the service's and its server's settings.
ATTACH_PARTS: Final = frozenset({Scope.LOAD_BALANCER, Scope.SERVICE, Scope.SERVER})


def load_balancer_attributes(settings: Settings) -> dict[str, str]:
    """The ALB attributes the settings require, as ``{attribute key: value}`` (CloudFormation names).

    Used for a load balancer this construct does not create (set on it, or listed in a warning);
    a new ALB gets the same values through its typed props. The key of each setting is the
    settings model's AWS names table (:data:`stickyws.settings.aws_names.LOAD_BALANCER_ATTRIBUTES`), so the construct
    writes exactly what the auditor reads back.
    """
    return {key: render_value(settings[name]) for name, key, _aws_default in LOAD_BALANCER_ATTRIBUTES}


class StickyWebSocketLoadBalancer(Construct):
    """An ALB, listener(s), ``Upgrade: websocket`` rule and sticky target group built from :class:`Settings`.

    Every load-balancer and target-group value comes from ``settings`` (see the settings table in
    docs/iac.md); the props below only choose the topology.

    :param vpc: VPC of the target group (and of the new ALB).
    :param settings: the deployment's settings; its ``load_balancer`` and ``target_group`` groups
        are checked with :func:`apply_settings` (errors raise), and :meth:`attach` judges them with
        the service's settings.
    :param load_balancer: reuse this ALB instead of creating one. Default: a new ALB.
    :param listener: reuse this listener: only the target group and the listener rule are created.
        Needs ``load_balancer`` or ``domain_name`` so that :attr:`url` is known.
    :param internet_facing: new ALB in public subnets open to the internet (default ``True``), or an
        internal one in private subnets that admits the VPC's CIDR.
    :param certificate_arn: ACM certificate of the HTTPS listener.
    :param domain_name: DNS name clients use; with ``hosted_zone`` a DNS-validated certificate and
        an alias record are created. Also the host of :attr:`url`.
    :param hosted_zone: Route 53 zone of ``domain_name``.
    :param http_only: demo mode without TLS: one HTTP listener on port 80, and a synth warning.
        Default ``False``; without it a certificate (ARN, or domain + zone) is required.
    :param log_bucket: bucket for access and connection logs. Default: a new bucket, S3-managed
        encryption (ALB log delivery does not support KMS), TLS enforced, public access blocked.
    :param upgrade_rule_priority: priority of the ``Upgrade: websocket`` rule; 1-50000, default 1.
        Blue/green, linear, canary: the test rule's, and the production rule takes the next one.
    :param polling_paths: path patterns of a polling transport forwarded to the same sticky target
        group (see the module doc), e.g. :data:`SOCKET_IO_PATHS`; 1-5 patterns starting with ``/``,
        at most 128 characters each. Default: none (no polling rule).
    :param polling_rule_priority: priority of that rule; 1-50000, not the upgrade rule's. Default:
        ``upgrade_rule_priority + 1``.
    :param target_port: container port of the targets. Default: the ``port`` setting.
    :param production_paths: blue/green, linear and canary only: the path patterns of the production
        rule, 1-4, each starting with ``/``; ``polling_paths`` are added to them. Default ``/*`` on a
        listener this construct creates; required with ``listener=``.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        settings: Settings,
        load_balancer: elbv2.IApplicationLoadBalancer | None = None,
        listener: elbv2.IApplicationListener | None = None,
        internet_facing: bool = True,
        certificate_arn: str | None = None,
        domain_name: str | None = None,
        hosted_zone: route53.IHostedZone | None = None,
        http_only: bool = False,
        log_bucket: s3.IBucket | None = None,
        upgrade_rule_priority: int = 1,
        target_port: int | None = None,
        polling_paths: Sequence[str] = (),
        polling_rule_priority: int | None = None,
        production_paths: Sequence[str] | None = None,
    ) -> None:
        super().__init__(scope, id_)
        _check_props(
            listener=listener,
            load_balancer=load_balancer,
            certificate_arn=certificate_arn,
            domain_name=domain_name,
            hosted_zone=hosted_zone,
            http_only=http_only,
            upgrade_rule_priority=upgrade_rule_priority,
        )
        polling_priority = polling_rule_priority if polling_rule_priority is not None else upgrade_rule_priority + 1
        _check_polling(polling_paths, polling_priority, upgrade_rule_priority)
        shifted = settings.deployment.deployment_strategy != "rolling"
        paths = (
            _production_paths(production_paths, polling_paths, listener, polling_rule_priority, upgrade_rule_priority)
            if shifted
            else ()
        )
        if not shifted and production_paths is not None:
            raise ValueError(
                "production_paths shape the production rule of a blue/green, linear or canary deployment: drop it, "
                "or set deployment_strategy"
            )
        self._verdict = apply_settings(self, settings, LOAD_BALANCER_PARTS)
        self._settings = settings
        self._http_only = http_only
        self._target_port = target_port if target_port is not None else settings.server.port

        self._target_group = self._create_target_group(vpc, "TargetGroup")
        self._alternate_target_group = self._create_target_group(vpc, "AlternateTargetGroup") if shifted else None
        self._log_bucket: s3.IBucket | None = None
        self._load_balancer: elbv2.IApplicationLoadBalancer | None = load_balancer

        if load_balancer is None and listener is None:
            alb = self._create_load_balancer(vpc, internet_facing)
            self._log_bucket = log_bucket or self._create_log_bucket()
            enable_logs(self, alb, self._log_bucket)
            self._load_balancer = alb
        elif load_balancer is not None:
            self._adopt_load_balancer(load_balancer, log_bucket)

        if listener is None:
            assert self._load_balancer is not None
            listener = self._create_listeners(
                self._load_balancer, vpc, internet_facing, certificate_arn, domain_name, hosted_zone
            )
        self._listener = listener

        self._production_rule: elbv2.ApplicationListenerRule | None = None
        self._test_rule: elbv2.ApplicationListenerRule | None = None
        self._polling_rule: elbv2.ApplicationListenerRule | None = None
        if self._alternate_target_group is not None:
            self._test_rule, self._production_rule = self._create_shifted_rules(
                listener, self._alternate_target_group, paths, upgrade_rule_priority
            )
            self._upgrade_rule = self._production_rule
        else:
            self._upgrade_rule = elbv2.ApplicationListenerRule(
                self,
                "WebSocketUpgradeRule",
                listener=listener,
                priority=upgrade_rule_priority,
                conditions=[elbv2.ListenerCondition.http_header(UPGRADE_HEADER[0], [UPGRADE_HEADER[1]])],
                action=elbv2.ListenerAction.forward([self._target_group]),
            )
        if polling_paths and not shifted:
            self._polling_rule = elbv2.ApplicationListenerRule(
                self,
                "PollingPathRule",
                listener=listener,
                priority=polling_priority,
                conditions=[elbv2.ListenerCondition.path_patterns(list(polling_paths))],
                action=elbv2.ListenerAction.forward([self._target_group]),
            )

        host = domain_name or (self._load_balancer.load_balancer_dns_name if self._load_balancer else "")
        if domain_name and hosted_zone is not None and self._load_balancer is not None:
            route53.ARecord(
                self,
                "AliasRecord",
                zone=hosted_zone,
                record_name=domain_name,
                target=route53.RecordTarget.from_alias(route53_targets.LoadBalancerTarget(self._load_balancer)),
            )
        http_scheme, ws_scheme = ("http", "ws") if http_only else ("https", "wss")
        self._url = f"{http_scheme}://{host}"
        self._websocket_url = f"{ws_scheme}://{host}{WS_PATH}"
        self._test_websocket_url = (
            f"{self._websocket_url}?{TEST_LANE_QUERY[0]}={TEST_LANE_QUERY[1]}" if shifted else None
        )

    # -- public read-only attributes -------------------------------------------------------------

    @property
    def load_balancer(self) -> elbv2.IApplicationLoadBalancer | None:
        """The ALB (new or the one passed in); ``None`` when only a listener was passed."""
        return self._load_balancer

    @property
    def listener(self) -> elbv2.IApplicationListener:
        """The listener that carries the ``Upgrade: websocket`` rule (HTTPS, or HTTP in HTTP-only mode)."""
        return self._listener

    @property
    def target_group(self) -> elbv2.ApplicationTargetGroup:
        """The sticky target group (IP targets, HTTP/1.1) that receives the WebSocket traffic."""
        return self._target_group

    @property
    def upgrade_rule(self) -> elbv2.ApplicationListenerRule:
        """The listener rule that forwards ``Upgrade: websocket`` requests to :attr:`target_group`.

        Blue/green, linear, canary: the :attr:`production_rule`, which carries the handshake too.
        """
        return self._upgrade_rule

    @property
    def alternate_target_group(self) -> elbv2.ApplicationTargetGroup | None:
        """The green target group of a blue/green, linear or canary layout (same attributes); else ``None``."""
        return self._alternate_target_group

    @property
    def production_rule(self) -> elbv2.ApplicationListenerRule | None:
        """The rule ECS rewrites to a weighted forward (blue/green, linear, canary); ``None`` for rolling."""
        return self._production_rule

    @property
    def test_rule(self) -> elbv2.ApplicationListenerRule | None:
        """The ``stickyws-lane=test`` rule to the alternate target group (blue/green, linear, canary); else ``None``."""
        return self._test_rule

    @property
    def test_websocket_url(self) -> str | None:
        """``wss://HOST/ws?stickyws-lane=test``: the test lane to green (blue/green, linear, canary); else ``None``."""
        return self._test_websocket_url

    @property
    def polling_rule(self) -> elbv2.ApplicationListenerRule | None:
        """The ``path-pattern`` rule of ``polling_paths`` (same target group); ``None`` without polling paths."""
        return self._polling_rule

    @property
    def security_group(self) -> ec2.ISecurityGroup | None:
        """Security group of the ALB (or of the listener passed in); ``None`` when it has none."""
        groups = self._connectable().connections.security_groups
        return groups[0] if groups else None

    @property
    def log_bucket(self) -> s3.IBucket | None:
        """Bucket of the access and connection logs; ``None`` for a load balancer this construct did not log."""
        return self._log_bucket

    @property
    def url(self) -> str:
        """``https://HOST`` (``http://`` in HTTP-only mode); HOST is ``domain_name`` or the ALB's DNS name."""
        return self._url

    @property
    def websocket_url(self) -> str:
        """``wss://HOST/ws`` (``ws://`` in HTTP-only mode): the URL clients connect to."""
        return self._websocket_url

    @property
    def http_only(self) -> bool:
        """Whether this is the demo mode without TLS."""
        return self._http_only

    # -- wiring ----------------------------------------------------------------------------------

    def attach(
        self,
        target: WebSocketFargateService | ecs.BaseService | elbv2.IApplicationLoadBalancerTarget,
        *,
        container_name: str | None = None,
        container_port: int | None = None,
    ) -> None:
        """Register ``target`` with :attr:`target_group`.

        A :class:`WebSocketFargateService` (or its ``.service``) is judged first: its settings with
        this load balancer's ``load_balancer`` and ``target_group`` values (idle timeout,
        deregistration delay, stickiness, health check), for the parts load balancer, service and
        server. A contradiction (e.g. ``idle_timeout_s=100`` here and ``ping_interval_s=60`` there)
        raises :class:`stickyws.settings.SettingsError` naming both sides; then the scaling signals
        that need the target group are wired.

        An ECS service registers its container (default: the task definition's default container,
        on :attr:`target_port`'s port) and its security group admits the ALB on that port; any other
        ``IApplicationLoadBalancerTarget`` (e.g. ``elbv2_targets.IpTarget``) is added as is.
        """
        owner = target if isinstance(target, WebSocketFargateService) else None
        if isinstance(target, ecs.BaseService) and isinstance(target.node.scope, WebSocketFargateService):
            owner = target.node.scope
        registered: ecs.BaseService | elbv2.IApplicationLoadBalancerTarget
        if owner is not None:
            self._judge_with(owner, container_port)
            registered = owner.service
        else:
            assert not isinstance(target, WebSocketFargateService)
            registered = target
        if owner is not None and (owner.deployment_strategy != "rolling") != (self._alternate_target_group is not None):
            raise ValueError(
                f"the service {owner.node.path} deploys with deployment_strategy={owner.deployment_strategy} and the "
                f"load balancer {self.node.path} was laid out for "
                f"{'blue/green, linear or canary' if self._alternate_target_group is not None else 'rolling'}: "
                "build both from the same deployment_strategy setting"
            )
        if isinstance(registered, ecs.BaseService):
            port = container_port if container_port is not None else self._target_port
            name = container_name or _default_container_name(registered)
            if self._alternate_target_group is not None:
                target = registered.load_balancer_target(
                    container_name=name, container_port=port, alternate_target=self._alternate_target(owner)
                )
                # ECS checks that the alternate target group is on the listener when the service is created.
                registered.node.add_dependency(self._alternate_target_group.load_balancer_attached)
            else:
                target = registered.load_balancer_target(container_name=name, container_port=port)
            self._target_group.add_target(target)
            registered.connections.allow_from(
                self._connectable(), ec2.Port.tcp(port), "from the WebSocket load balancer"
            )
        else:
            self._target_group.add_target(registered)
        if owner is not None:
            owner.use_target_group(self._target_group, self._load_balancer)

    def _alternate_target(self, owner: WebSocketFargateService | None) -> ecs.AlternateTarget:
        """What ECS shifts with: the alternate target group, the production and test rules, the infrastructure role.

        The role is the service's (:attr:`WebSocketFargateService.infrastructure_role`); a plain ECS
        service gets one from aws-cdk-lib.
        """
        assert self._alternate_target_group is not None
        assert self._production_rule is not None
        assert self._test_rule is not None
        return ecs.AlternateTarget(
            "AlternateTarget",
            alternate_target_group=self._alternate_target_group,
            production_listener=ecs.ListenerRuleConfiguration.application_listener_rule(self._production_rule),
            test_listener=ecs.ListenerRuleConfiguration.application_listener_rule(self._test_rule),
            role=owner.infrastructure_role if owner is not None else None,
        )

    def _create_shifted_rules(
        self,
        listener: elbv2.IApplicationListener,
        alternate: elbv2.ApplicationTargetGroup,
        paths: Sequence[str],
        priority: int,
    ) -> tuple[elbv2.ApplicationListenerRule, elbv2.ApplicationListenerRule]:
        """The test rule (``priority``) and the production rule (``priority + 1``) of a traffic-shifting layout."""
        scoped = [] if tuple(paths) == ALL_PATHS else [elbv2.ListenerCondition.path_patterns(list(paths))]
        test = elbv2.ApplicationListenerRule(
            self,
            "TestRule",
            listener=listener,
            priority=priority,
            conditions=[
                elbv2.ListenerCondition.query_strings(
                    [elbv2.QueryStringCondition(key=TEST_LANE_QUERY[0], value=TEST_LANE_QUERY[1])]
                ),
                *scoped,
            ],
            action=elbv2.ListenerAction.forward([alternate]),
        )
        blue, green = PRODUCTION_WEIGHTS
        production = elbv2.ApplicationListenerRule(
            self,
            "ProductionRule",
            listener=listener,
            priority=priority + 1,
            conditions=[elbv2.ListenerCondition.path_patterns(list(paths))],
            # No stickiness_duration: target-group stickiness (AWSALBTG) would beat the weights.
            action=elbv2.ListenerAction.weighted_forward(
                [
                    elbv2.WeightedTargetGroup(target_group=self._target_group, weight=blue),
                    elbv2.WeightedTargetGroup(target_group=alternate, weight=green),
                ]
            ),
        )
        return test, production

    def _judge_with(self, service: WebSocketFargateService, container_port: int | None) -> None:
        """Judge ``service``'s settings with this load balancer's values; raise on a contradiction."""
        port = container_port if container_port is not None else self._target_port
        if port != service.settings["port"]:
            raise ValueError(
                f"the load balancer sends traffic to port {port} and the service {service.node.path} listens on "
                f"{service.settings['port']}: give both the same port setting, or pass container_port= / target_port="
            )
        combined = dataclasses.replace(
            service.settings, load_balancer=self._settings.load_balancer, target_group=self._settings.target_group
        )
        try:
            apply_settings(self, combined, ATTACH_PARTS)
        except SettingsError as exc:
            raise SettingsMismatchError(
                exc.findings,
                f"the load balancer {self.node.path} (its load_balancer and target_group settings) and the service "
                f"{service.node.path} (its service and server settings) do not fit together",
            ) from None

    def skipped_rules(self) -> list[str]:
        """``rule-id: reason`` of each settings rule this construct did not judge (see ``apply_settings``)."""
        return self._verdict.skipped_rules()

    @property
    def target_port(self) -> int:
        """Container port the target group sends traffic to."""
        return self._target_port

    # -- building blocks -------------------------------------------------------------------------

    def _connectable(self) -> ec2.IConnectable:
        if self._load_balancer is not None:
            return self._load_balancer
        return self._listener

    def _create_target_group(self, vpc: ec2.IVpc, id_: str) -> elbv2.ApplicationTargetGroup:
        tg = self._settings.target_group
        sticky_duration = Duration.seconds(tg.stickiness_duration_s) if tg.stickiness_enabled else None
        cookie_name = tg.app_cookie_name if tg.stickiness_enabled and tg.stickiness_type == "app_cookie" else None
        return elbv2.ApplicationTargetGroup(
            self,
            id_,
            vpc=vpc,
            target_type=elbv2.TargetType.IP,
            protocol=elbv2.ApplicationProtocol.HTTP,
            protocol_version=elbv2.ApplicationProtocolVersion.HTTP1,
            port=self._target_port,
            deregistration_delay=Duration.seconds(tg.deregistration_delay_s),
            stickiness_cookie_duration=sticky_duration,
            stickiness_cookie_name=cookie_name,
            health_check=elbv2.HealthCheck(
                enabled=True,
                protocol=elbv2.Protocol.HTTP,
                port="traffic-port",
                path=tg.health_check_path,
                interval=Duration.seconds(tg.health_check_interval_s),
                timeout=Duration.seconds(tg.health_check_timeout_s),
                healthy_threshold_count=tg.healthy_threshold_count,
                unhealthy_threshold_count=tg.unhealthy_threshold_count,
                healthy_http_codes=tg.health_check_matcher,
            ),
        )

    def _create_load_balancer(self, vpc: ec2.IVpc, internet_facing: bool) -> elbv2.ApplicationLoadBalancer:
        lb = self._settings.load_balancer
        # Internet-facing: public subnets. Internal: the VPC's default selection (private, else isolated).
        subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC) if internet_facing else None
        return elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            internet_facing=internet_facing,
            vpc_subnets=subnets,
            http2_enabled=lb.http2_enabled,
            idle_timeout=Duration.seconds(lb.idle_timeout_s),
            client_keep_alive=Duration.seconds(lb.client_keep_alive_s),
            drop_invalid_header_fields=lb.drop_invalid_header_fields,
            desync_mitigation_mode=elbv2.DesyncMitigationMode[lb.desync_mitigation_mode.upper()],
            # capacity_reservation_lcu (0 = none): MinimumLoadBalancerCapacity.CapacityUnits, the ALB's reserved floor.
            minimum_capacity_unit=lb.capacity_reservation_lcu or None,
        )

    def _create_log_bucket(self) -> s3.Bucket:
        # S3-managed keys: ALB access and connection log delivery does not support SSE-KMS.
        bucket = s3.Bucket(
            self,
            "LogBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=False,
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            bucket,
            "AwsSolutions-S1",
            "This bucket receives the load balancer's access and connection logs; logging its own access "
            "to a further bucket would only move the finding to that bucket.",
        )
        return bucket

    def _adopt_load_balancer(self, alb: elbv2.IApplicationLoadBalancer, log_bucket: s3.IBucket | None) -> None:
        """Apply the settings' attributes to a load balancer built in this app; warn about an imported one."""
        attributes = load_balancer_attributes(self._settings)
        if isinstance(alb, elbv2.ApplicationLoadBalancer):
            for key, value in attributes.items():
                alb.set_attribute(key, value)
            if log_bucket is not None:
                self._log_bucket = log_bucket
                enable_logs(self, alb, log_bucket)
            return
        wanted = ", ".join(f"{key}={value}" for key, value in attributes.items())
        Annotations.of(self).add_warning_v2(
            UNMANAGED_ATTRIBUTES_WARNING_ID,
            f"the load balancer was imported, so its attributes are not managed here; set {wanted} "
            "on it (the auditor checks them)",
        )

    def _create_listeners(
        self,
        alb: elbv2.IApplicationLoadBalancer,
        vpc: ec2.IVpc,
        internet_facing: bool,
        certificate_arn: str | None,
        domain_name: str | None,
        hosted_zone: route53.IHostedZone | None,
    ) -> elbv2.ApplicationListener:
        forward = elbv2.ListenerAction.forward([self._target_group])
        self._admit_clients(alb, internet_facing)
        if self._http_only:
            Annotations.of(self).add_warning_v2(
                HTTP_ONLY_WARNING_ID,
                "HTTP-only demo mode: clients connect with ws:// and http:// in clear text. For anything "
                "but a demo pass certificate_arn, or domain_name with a hosted zone (see docs/iac.md).",
            )
            listener = elbv2.ApplicationListener(
                self,
                "HttpListener",
                load_balancer=alb,
                port=HTTP_PORT,
                protocol=elbv2.ApplicationProtocol.HTTP,
                default_action=forward,
                open=internet_facing,
            )
            self._admit_vpc(listener, vpc, internet_facing)
            return listener

        if certificate_arn is not None:
            certificate: elbv2.IListenerCertificate = elbv2.ListenerCertificate.from_arn(certificate_arn)
        else:
            assert domain_name is not None  # _check_props
            assert hosted_zone is not None
            certificate = acm.Certificate(
                self,
                "Certificate",
                domain_name=domain_name,
                validation=acm.CertificateValidation.from_dns(hosted_zone),
            )
        https = elbv2.ApplicationListener(
            self,
            "HttpsListener",
            load_balancer=alb,
            port=HTTPS_PORT,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[certificate],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            default_action=forward,
            open=internet_facing,
        )
        redirect = elbv2.ApplicationListener(
            self,
            "HttpRedirectListener",
            load_balancer=alb,
            port=HTTP_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            default_action=elbv2.ListenerAction.redirect(protocol="HTTPS", port=str(HTTPS_PORT), permanent=True),
            open=internet_facing,
        )
        self._admit_vpc(https, vpc, internet_facing)
        self._admit_vpc(redirect, vpc, internet_facing)
        return https

    @staticmethod
    def _admit_clients(alb: elbv2.IApplicationLoadBalancer, internet_facing: bool) -> None:
        """An internet-facing load balancer's listeners are open to any address: acknowledge that once, here."""
        if not internet_facing:
            return
        for group in alb.connections.security_groups:
            acknowledge(
                group,
                "AwsSolutions-EC23",
                "An internet-facing load balancer serves WebSocket clients from any address on its listener "
                "ports (443, and 80 for the redirect or the HTTP-only demo); an internal one admits only the "
                "VPC's CIDR.",
            )

    @staticmethod
    def _admit_vpc(listener: elbv2.ApplicationListener, vpc: ec2.IVpc, internet_facing: bool) -> None:
        """An internal load balancer admits its VPC's CIDR on the listener port instead of the internet."""
        if not internet_facing:
            listener.connections.allow_default_port_from(ec2.Peer.ipv4(vpc.vpc_cidr_block), "from the VPC")


def enable_logs(scope: Construct, alb: elbv2.ApplicationLoadBalancer, bucket: s3.IBucket) -> None:
    """Send ``alb``'s access logs and connection logs to ``bucket`` and grant log delivery in its policy.

    CDK's ``log_access_logs`` needs a concrete region to pick the principal, which an env-agnostic
    stack does not have. This writes the same grants so they resolve in whatever region the
    template is deployed to: the log-delivery service principal (regions opened since August 2022)
    and, in the regions that have one, the regional Elastic Load Balancing account (older regions),
    chosen at deploy time by a condition over a region mapping. In other regions that second grant
    names the stack's own account, which owns the bucket anyway.
    """
    prefixes = {"access_logs": ACCESS_LOG_PREFIX, "connection_logs": CONNECTION_LOG_PREFIX}
    for kind, prefix in prefixes.items():
        alb.set_attribute(f"{kind}.s3.enabled", "true")
        alb.set_attribute(f"{kind}.s3.bucket", bucket.bucket_name)
        alb.set_attribute(f"{kind}.s3.prefix", prefix)
    resources = [bucket.arn_for_objects(f"{prefix}/AWSLogs/{Aws.ACCOUNT_ID}/*") for prefix in prefixes.values()]
    bucket.add_to_resource_policy(
        iam.PolicyStatement(
            actions=["s3:PutObject"],
            principals=[iam.ServicePrincipal(LOG_DELIVERY_SERVICE_PRINCIPAL)],
            resources=resources,
        )
    )
    bucket.add_to_resource_policy(
        iam.PolicyStatement(actions=["s3:PutObject"], principals=[_regional_elb_account(scope)], resources=resources)
    )
    if isinstance(bucket, s3.Bucket) and bucket.policy is not None:
        alb.node.add_dependency(bucket.policy)


def _regional_elb_account(scope: Construct) -> iam.IPrincipal:
    """The Elastic Load Balancing account of the stack's region, decided at synth when the region is known."""
    accounts = {r.name: r.elbv2_account for r in region_info.RegionInfo.regions if r.elbv2_account}
    own_root = iam.AccountRootPrincipal()
    region = Stack.of(scope).region
    if not Token.is_unresolved(region):
        account = accounts.get(region)
        return iam.AccountPrincipal(account) if account else own_root
    mapping = CfnMapping(scope, "ElbLogAccounts", mapping={name: {"account": acct} for name, acct in accounts.items()})
    equals = [Fn.condition_equals(Aws.REGION, name) for name in accounts]
    chunks = [equals[i : i + 10] for i in range(0, len(equals), 10)]
    groups = [Fn.condition_or(*chunk) if len(chunk) > 1 else chunk[0] for chunk in chunks]
    condition = CfnCondition(
        scope, "RegionHasElbLogAccount", expression=Fn.condition_or(*groups) if len(groups) > 1 else groups[0]
    )
    arn = Fn.condition_if(
        condition.logical_id,
        Fn.sub("arn:${AWS::Partition}:iam::${Account}:root", {"Account": mapping.find_in_map(Aws.REGION, "account")}),
        Fn.sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root"),
    )
    return iam.ArnPrincipal(Token.as_string(arn))


def _default_container_name(service: ecs.BaseService) -> str:
    container = service.task_definition.default_container
    if container is None:
        raise ValueError("the service's task definition has no container: pass container_name= to attach()")
    return container.container_name


def _check_polling(paths: Sequence[str], priority: int, upgrade_priority: int, what: str = "polling path") -> None:
    """Refuse polling paths (or other path patterns, named ``what``) or a priority the ALB would reject."""
    if isinstance(paths, str):
        raise ValueError(f"polling_paths={paths!r} is one string: pass a list, e.g. [{paths!r}]")
    if len(paths) > MAX_POLLING_PATHS:
        raise ValueError(f"{len(paths)} polling_paths: one ALB rule holds at most {MAX_POLLING_PATHS}; merge them")
    for path in paths:
        if Token.is_unresolved(path):
            continue
        bad = sorted(set(path) - _PATH_PATTERN_CHARS)
        if not path.startswith("/") or len(path) > MAX_PATH_PATTERN_LENGTH or bad:
            raise ValueError(
                f"{what} {path!r} is not an ALB path pattern: start with /, at most "
                f"{MAX_PATH_PATTERN_LENGTH} characters of A-Z a-z 0-9 _-.$/~\"'@:+&*? (e.g. /socket.io/*)"
            )
    if not paths or Token.is_unresolved(priority):
        return
    if not 1 <= priority <= 50_000:
        raise ValueError(f"polling_rule_priority={priority} is outside 1-50000: pick a free priority")
    if priority == upgrade_priority:
        raise ValueError(
            f"polling_rule_priority={priority} is the upgrade rule's: two rules of a listener need two priorities"
        )


def _production_paths(
    given: Sequence[str] | None,
    polling_paths: Sequence[str],
    listener: elbv2.IApplicationListener | None,
    polling_rule_priority: int | None,
    upgrade_rule_priority: int,
) -> tuple[str, ...]:
    """The production rule's paths (``given`` plus the polling paths, else ``/*``); refuse what cannot work."""
    if polling_rule_priority is not None:
        raise ValueError(
            "polling_rule_priority: with a blue/green, linear or canary deployment the polling paths are part of the "
            "production rule (ECS shifts only that rule): drop polling_rule_priority"
        )
    if not Token.is_unresolved(upgrade_rule_priority) and upgrade_rule_priority >= 50_000:
        raise ValueError(
            f"upgrade_rule_priority={upgrade_rule_priority}: the production rule takes the next priority, so pick "
            "one below 50000"
        )
    if given is None:
        if listener is not None:
            raise ValueError(
                "a blue/green, linear or canary deployment on a listener you pass shifts only its production rule, "
                "and a /* rule would take the other applications' traffic: pass production_paths=[...] naming every "
                "path the service serves (e.g. ['/ws', '/healthz'])"
            )
        return ALL_PATHS
    if isinstance(given, str):
        raise ValueError(f"production_paths={given!r} is one string: pass a list, e.g. [{given!r}]")
    paths = tuple(dict.fromkeys([*given, *polling_paths]))
    if not paths or len(paths) > MAX_PRODUCTION_PATHS:
        raise ValueError(
            f"{len(paths)} production paths (polling paths included): the production rule takes 1-"
            f"{MAX_PRODUCTION_PATHS} (the test rule adds its query string, an ALB rule holds 5 values); use wildcards"
        )
    _check_polling(paths, 1, 0, "production path")  # the same path-pattern syntax; priorities are checked elsewhere
    return paths


def _check_props(
    *,
    listener: elbv2.IApplicationListener | None,
    load_balancer: elbv2.IApplicationLoadBalancer | None,
    certificate_arn: str | None,
    domain_name: str | None,
    hosted_zone: route53.IHostedZone | None,
    http_only: bool,
    upgrade_rule_priority: int,
) -> None:
    """Refuse impossible combinations of props with a message that says how to fix them."""
    if not (Token.is_unresolved(upgrade_rule_priority) or 1 <= upgrade_rule_priority <= 50_000):
        raise ValueError(f"upgrade_rule_priority={upgrade_rule_priority} is outside 1-50000: pick a free priority")
    if listener is not None:
        if certificate_arn is not None or hosted_zone is not None:
            raise ValueError(
                "an existing listener keeps its own certificates: drop certificate_arn/hosted_zone, "
                "or add the certificate to that listener"
            )
        if load_balancer is None and domain_name is None:
            raise ValueError(
                "with an existing listener pass load_balancer= (or domain_name=) so the construct knows its URL"
            )
        return
    if http_only:
        if certificate_arn is not None or hosted_zone is not None:
            raise ValueError("http_only=True creates no HTTPS listener: drop certificate_arn/hosted_zone or http_only")
        return
    if certificate_arn is None and (domain_name is None or hosted_zone is None):
        raise ValueError(
            "an HTTPS listener needs a certificate: pass certificate_arn=, or domain_name= with hosted_zone= "
            "(a DNS-validated certificate is created), or http_only=True for a demo without TLS"
        )
