"""The WebSocket server as an ECS Fargate service, configured from the one settings model.

:class:`WebSocketFargateService` creates (or reuses) the cluster, the task definition with the
``server`` container, the service and its autoscaling. It follows ``server_mode``:

**Reference server** (``server_mode=reference``, the default), what it renders and where from:

* container environment: ``stickyws.settings.server_environment(settings)`` (every ``STICKYWS_*``
  setting; the server reads the same names with ``from_env``), ``REDIS_URL`` when a registry is
  given, ``STICKYWS_SERVICE_NAME`` (``stickyws.settings.ENV_SERVICE_NAME``: the service name, the
  ``ServiceName`` dimension of the server's metrics; Fargate's task metadata does not report it),
  then the caller's extra variables;
* ``STICKYWS_JWT_SECRET`` from Secrets Manager (``ecs.Secret``), never a literal (generated unless
  one is passed);
* with ``publishers`` (or :meth:`WebSocketFargateService.allow_publish_from`): the HTTP publish
  endpoint's port (``publish_port``) mapped and opened to those security groups only, and its key
  ``STICKYWS_PUBLISH_KEY`` from Secrets Manager; the load balancer never routes that port;
* the container health check :meth:`ContainerHealthCheck.reference` (python in the image);
* target tracking on the server's ``ActiveConnections`` per task (``target_connections_per_task``)
  and on CPU (``target_cpu_percent``).

**Your own server** (``server_mode=own``, your ``image``): the environment is only what
``server_env`` names (``server_environment(settings)``), ``REDIS_URL`` if you pass ``redis_url``,
then your ``environment``; no ``STICKYWS_*`` variable of the reference server. The signing key is
injected only when you pass ``jwt_secret`` (as ``jwt_secret_env``). No container health check
unless you choose one (the load balancer's target health check still guards each task; an info
annotation says so), and scaling on CPU unless you choose signals (:mod:`constructs_lib.scaling`).

Both modes: the container carries ``server_labels(settings)`` as Docker labels (which server runs
and what it is told; the auditor reads them back), ``stopTimeout`` = ``stop_timeout_s``,
health-check grace = ``health_check_grace_s``, the deployment of ``deployment_strategy`` (see
below), and the task count between ``min_count`` and ``max_count`` with the long ``scale_in_cooldown_s``
(every scale-in moves all clients of a task). With ``scale_in_protection`` (the default) the task role may
call ``ecs:UpdateTaskProtection`` and ``ecs:GetTaskProtection`` on the tasks of the service's cluster:
busy tasks protect themselves through the ECS agent, so a scale-in stops the least busy ones.

Deployment (``deployment_strategy``): ``rolling`` (the default) replaces tasks with
``min_healthy_percent``/``max_percent`` (100/200: replacements come up before old tasks drain),
the circuit breaker rolling back. ``blue_green``, ``linear`` and ``canary`` use ECS's own strategy
(``bake_time_min``; linear and canary shift ``traffic_step_percent`` per step, each held
``step_bake_time_min``) with an infrastructure role (:attr:`infrastructure_role`) that
``StickyWebSocketLoadBalancer.attach`` hands to ECS with the alternate target group and the
production listener rule. These strategies get no circuit breaker: ECS runs it for rolling
deployments only, so it is left out (and aws-cdk-lib's warning about it acknowledged). Weights move
new handshakes only, so with ``migration_hook`` (the default) and a registry (``redis_url``) the
service installs the migration hook (:class:`constructs_lib.migration_hook.MigrationHook`,
:attr:`migration_hook`) at ``POST_PRODUCTION_TRAFFIC_SHIFT``: it moves blue's open sockets to green at
``migration_pace_per_s`` before the bake ends (docs/deployments.md). Admit its function on the
registry and connect it there as for the drain notifier (``registry.allow_from(hook.function)``,
``registry.connect_function(hook.function)``). ``availability_zone_rebalancing`` turns ECS's zone
rebalancing on or off; its task stops take the same drain as every other stop.

The service's security group has no ingress of its own: ``StickyWebSocketLoadBalancer.attach``
admits the load balancer's security group on the container port (and wires the scaling signals
that need the target group).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import jsii
from aws_cdk import Annotations, ArnFormat, Duration, Names, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct, IValidation

from constructs_lib.health_check import ContainerHealthCheck, reference_command
from constructs_lib.image import server_image
from constructs_lib.migration_hook import MigrationHook, nag_text
from constructs_lib.nag import acknowledge
from constructs_lib.observability import ACTIVE_CONNECTIONS, SERVICE_NAME_DIMENSION
from constructs_lib.scaling import ScalingSignal
from constructs_lib.settings_check import apply_settings
from stickyws.settings import (
    ENV_JWT_SECRET,
    ENV_PUBLISH_KEY,
    ENV_REDIS_URL,
    ENV_SERVICE_NAME,
    ENV_TARGET_GROUP_ARN,
    Scope,
    Settings,
    server_environment,
    server_labels,
)

#: Name of the server container in the task definition (the load balancer targets it).
CONTAINER_NAME: Final = "server"
#: Period over which the autoscaling and dashboard statistics of the server's metrics are taken.
METRIC_PERIOD: Final = Duration.minutes(1)
#: Prefix of the container's log streams.
LOG_STREAM_PREFIX: Final = "stickyws"
#: The parts of a deployment this construct builds (the rules it runs).
SERVICE_PARTS: Final = frozenset({Scope.SERVICE, Scope.SERVER})
#: Annotation id of the note that your own server's task runs no container health check.
NO_CONTAINER_HEALTH_CHECK_ID: Final = "stickyws:service:no-container-health-check"
#: What the task role may do with ``scale_in_protection``: the ECS agent's endpoint calls these APIs with it.
TASK_PROTECTION_ACTIONS: Final = ("ecs:UpdateTaskProtection", "ecs:GetTaskProtection")


#: The AWS managed policy ECS's infrastructure role needs to rewrite listener rules during a traffic shift.
INFRASTRUCTURE_POLICY: Final = "AmazonECSInfrastructureRolePolicyForLoadBalancers"
#: Annotation id of the warning that migration_hook is on but the service has no registry for the hook to use.
MIGRATION_HOOK_NEEDS_REGISTRY_ID: Final = "stickyws:service:migration-hook-needs-registry"
#: aws-cdk-lib's warning for a service without a circuit breaker (acknowledged: the breaker is rolling-only).
CDK_CIRCUIT_BREAKER_WARNING_ID: Final = "@aws-cdk/aws-ecs:shouldUseCircuitBreaker"
_STRATEGIES: Final = {
    "blue_green": ecs.DeploymentStrategy.BLUE_GREEN,
    "linear": ecs.DeploymentStrategy.LINEAR,
    "canary": ecs.DeploymentStrategy.CANARY,
}


def shifts_traffic(settings: Settings) -> bool:
    """Whether ``deployment_strategy`` is blue_green, linear or canary (two target groups, a weighted rule)."""
    return settings.deployment.deployment_strategy != "rolling"


def deployment_props(settings: Settings) -> dict[str, Any]:
    """The ``FargateService`` props of the ``deployment_strategy`` setting.

    ``rolling``: the circuit breaker with rollback (min/max healthy percent come from the task
    settings). ``blue_green``, ``linear``, ``canary``: that strategy on the ECS deployment controller,
    ``bake_time`` = ``bake_time_min``, and for linear and canary a ``TrafficShiftConfig`` of
    ``traffic_step_percent`` and ``step_bake_time_min``; no circuit breaker, which ECS runs for
    rolling deployments only.
    """
    d = settings.deployment
    if not shifts_traffic(settings):
        return {"circuit_breaker": ecs.DeploymentCircuitBreaker(enable=True, rollback=True)}
    props: dict[str, Any] = {
        "deployment_strategy": _STRATEGIES[d.deployment_strategy],
        "deployment_controller": ecs.DeploymentController(type=ecs.DeploymentControllerType.ECS),
        "bake_time": Duration.minutes(d.bake_time_min),
    }
    step = ecs.TrafficShiftConfig(
        step_percent=d.traffic_step_percent, step_bake_time=Duration.minutes(d.step_bake_time_min)
    )
    if d.deployment_strategy == "linear":
        props["linear_configuration"] = step
    elif d.deployment_strategy == "canary":
        props["canary_configuration"] = step
    return props


def health_check_command(settings: Settings) -> list[str]:
    """The reference server's container health check (see :func:`constructs_lib.health_check.reference_command`)."""
    return reference_command(settings)


def container_environment(
    settings: Settings,
    *,
    service_name: str,
    redis_url: str | None = None,
    extra: Mapping[str, str] | None = None,
    reserved: Sequence[str] = (ENV_JWT_SECRET, ENV_PUBLISH_KEY),
) -> dict[str, str]:
    """The server container's environment: what the server is told, the registry URL, then ``extra``.

    Reference server: every ``STICKYWS_*`` setting, ``REDIS_URL`` and ``STICKYWS_SERVICE_NAME``.
    Your own server: the variables ``server_env`` names and ``REDIS_URL`` (when given) only.
    Raises ``ValueError`` when ``extra`` would override a rendered variable or one of ``reserved``
    (the secrets' names): change the setting instead, or pass ``redis_url``.
    """
    env = server_environment(settings)
    if redis_url is not None:
        env[ENV_REDIS_URL] = redis_url
    if not settings.own_server:
        env[ENV_SERVICE_NAME] = service_name
    for name, value in (extra or {}).items():
        if name in env or name in reserved:
            raise ValueError(
                f"environment variable {name} is rendered by WebSocketFargateService: change the setting, "
                "the redis_url or the jwt_secret instead of overriding it"
            )
        env[name] = value
    return env


class WebSocketFargateService(Construct):
    """Cluster, task definition, ``server`` container, Fargate service and autoscaling from :class:`Settings`.

    :param vpc: VPC of the service (and of a new cluster); tasks run in its private subnets (the
        CDK default selection) without public IPs.
    :param settings: the deployment's settings; ``server_mode`` chooses the reference server or
        your own (see the module doc). Checked with ``apply_settings`` for the service and the
        server (errors raise; the load balancer's rules run in ``attach``).
    :param cluster: reuse this cluster. Default: a new cluster with Container Insights.
    :param image: the container image. Default (reference server only):
        :func:`constructs_lib.image.server_image`, an image asset of the reference server. Required
        with ``server_mode=own``.
    :param jwt_secret: Secrets Manager secret whose whole string is the HS256 token signing key,
        injected as ``jwt_secret_env``. Default: a generated 64-character secret for the reference
        server; none for your own server.
    :param jwt_secret_env: variable the signing key is injected as. Default ``STICKYWS_JWT_SECRET``
        (the only name the reference server reads).
    :param redis_url: registry URL given to the server as ``REDIS_URL``. Default: none (the
        reference server falls back to its in-memory registry, fit for one task only).
    :param log_retention: retention of the container log group. Default one month.
    :param environment: extra container variables; they may not override rendered ones.
    :param service_name: the ECS service name (also the reference metrics' ``ServiceName``
        dimension, so it is fixed at synth). Default: a name unique to this construct's path in its
        stack. Up to 255 letters, digits, hyphens and underscores.
    :param publishers: security groups of the backends that may call the reference server's publish
        endpoint (``POST /v1/publish`` on ``publish_port``). Default: none, and the endpoint stays
        off. Needs ``publish_port`` > 0 and the reference server.
    :param publish_key: Secrets Manager secret whose whole string is the publish endpoint's key.
        Default (with ``publishers``): a generated 48-character secret.
    :param health_check: the container health check (:class:`ContainerHealthCheck`). Default:
        ``reference()`` for the reference server, ``none()`` for your own.
    :param scaling: the target-tracking signals (:class:`ScalingSignal`). Default: the server's
        connections per task and CPU for the reference server, CPU for your own. Signals on the
        load balancer's metrics are wired by ``attach`` (or by ``target_group``/``load_balancer``).
    :param target_group: the load balancer's target group, for the signals that need it. Default:
        the one ``StickyWebSocketLoadBalancer.attach`` registers the service with.
    :param load_balancer: the load balancer of ``target_group`` (for ``connections_per_target``).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        settings: Settings,
        cluster: ecs.ICluster | None = None,
        image: ecs.ContainerImage | None = None,
        jwt_secret: secretsmanager.ISecret | None = None,
        jwt_secret_env: str = ENV_JWT_SECRET,
        redis_url: str | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        environment: Mapping[str, str] | None = None,
        service_name: str | None = None,
        publishers: Sequence[ec2.ISecurityGroup] = (),
        publish_key: secretsmanager.ISecret | None = None,
        health_check: ContainerHealthCheck | None = None,
        scaling: Sequence[ScalingSignal] | None = None,
        target_group: elbv2.IApplicationTargetGroup | None = None,
        load_balancer: elbv2.IApplicationLoadBalancer | None = None,
    ) -> None:
        super().__init__(scope, id_)
        signals = tuple(scaling) if scaling is not None else ScalingSignal.defaults_for(settings)
        _check_props(
            settings,
            image=image,
            jwt_secret_env=jwt_secret_env,
            publishers=publishers,
            publish_key=publish_key,
            signals=signals,
        )
        self._publish_key: secretsmanager.ISecret | None = None
        self._verdict = apply_settings(self, settings, SERVICE_PARTS)
        self._settings = settings
        self._describe_target_health_granted = False
        self._publish_mapped = False
        self._health_check = health_check or ContainerHealthCheck.default_for(settings)
        task = settings.task

        self._cluster: ecs.ICluster = cluster or ecs.Cluster(
            self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )
        self._service_name = service_name or Names.unique_resource_name(self, max_length=255, separator="-")

        if jwt_secret is None and not settings.own_server:
            generated = secretsmanager.Secret(
                self,
                "JwtSecret",
                description="HS256 signing key of stickyws connection tokens",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    password_length=64, exclude_punctuation=True
                ),
            )
            acknowledge(
                generated,
                "AwsSolutions-SMG4",
                "Rotating the token signing key invalidates every outstanding connection token; rotate it "
                "deliberately (a new secret version, then a deployment) rather than on a schedule.",
            )
            jwt_secret = generated
        self._jwt_secret = jwt_secret

        self._log_group = logs.LogGroup(self, "LogGroup", retention=log_retention)

        self._task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=int(task.task_cpu),
            memory_limit_mib=task.task_memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        container_health_check = self._health_check.render(settings)
        self._container = self._task_definition.add_container(
            CONTAINER_NAME,
            container_name=CONTAINER_NAME,
            image=image or server_image(),
            essential=True,
            port_mappings=[ecs.PortMapping(container_port=settings["port"], protocol=ecs.Protocol.TCP)],
            environment=container_environment(
                settings,
                service_name=self._service_name,
                redis_url=redis_url,
                extra=environment,
                reserved=(jwt_secret_env, ENV_PUBLISH_KEY),
            ),
            secrets={jwt_secret_env: ecs.Secret.from_secrets_manager(jwt_secret)} if jwt_secret is not None else None,
            docker_labels=server_labels(settings),
            logging=ecs.LogDriver.aws_logs(stream_prefix=LOG_STREAM_PREFIX, log_group=self._log_group),
            stop_timeout=Duration.seconds(task.stop_timeout_s),
            health_check=container_health_check,
        )
        if container_health_check is None:
            Annotations.of(self).add_info_v2(
                NO_CONTAINER_HEALTH_CHECK_ID,
                "the server container has no container health check (health_check=ContainerHealthCheck.none()); "
                f"the load balancer's target health check on {settings['health_check_path']} still guards each "
                "task once it is attached. Choose ContainerHealthCheck.http() or .command(...) to have ECS probe "
                "inside the task too.",
            )
        acknowledge(
            self._task_definition,
            "AwsSolutions-ECS2",
            "The environment holds the non-secret settings the server is told, the registry URL and (for the "
            "reference server) the service name; the signing key is injected from Secrets Manager.",
        )

        if task.scale_in_protection:
            self._grant_task_protection()

        self._security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="stickyws WebSocket tasks: ingress only from the load balancer (added by attach)",
            allow_all_outbound=True,
        )
        self._infrastructure_role: iam.Role | None = None
        if shifts_traffic(settings):
            self._infrastructure_role = self._create_infrastructure_role()
        self._service = ecs.FargateService(
            self,
            "Service",
            cluster=self._cluster,
            task_definition=self._task_definition,
            service_name=self._service_name,
            desired_count=task.desired_count,
            min_healthy_percent=task.min_healthy_percent,
            max_healthy_percent=task.max_percent,
            health_check_grace_period=Duration.seconds(task.health_check_grace_s),
            assign_public_ip=False,
            security_groups=[self._security_group],
            availability_zone_rebalancing=(
                ecs.AvailabilityZoneRebalancing.ENABLED
                if task.availability_zone_rebalancing
                else ecs.AvailabilityZoneRebalancing.DISABLED
            ),
            **deployment_props(settings),
        )
        if shifts_traffic(settings):
            Annotations.of(self._service).acknowledge_warning(
                CDK_CIRCUIT_BREAKER_WARNING_ID,
                "the deployment circuit breaker is rolling-only; a blue/green, linear or canary deployment rolls "
                "back through ECS's own stages (and alarms, when given)",
            )
        self._migration_hook = self._install_migration_hook(vpc, redis_url)
        if publish_key is not None:
            self._publish_key = publish_key
        for peer in publishers:
            self.allow_publish_from(peer)

        self._scaling = self._service.auto_scale_task_count(min_capacity=task.min_count, max_capacity=task.max_count)
        self._signals = signals
        self._pending_signals = [s for s in signals if s.needs_target_group]
        for signal in signals:
            if not signal.needs_target_group:
                signal.add_to(self._scaling, settings, connections_metric=self.connections_metric)
        if target_group is not None:
            self.use_target_group(target_group, load_balancer)
        self.node.add_validation(_SignalsWired(self))
        execution_role = self._task_definition.execution_role
        if execution_role is not None and image is None:
            acknowledge(
                execution_role,
                "AwsSolutions-IAM5[Resource::*]",
                "ecr:GetAuthorizationToken, which pulling the image asset needs, has no resource-level permissions.",
            )

    def _install_migration_hook(self, vpc: ec2.IVpc, redis_url: str | None) -> MigrationHook | None:
        """The migration hook on the service, for a traffic-shifting strategy with ``migration_hook`` on."""
        if not (shifts_traffic(self._settings) and self._settings.deployment.migration_hook):
            return None
        if redis_url is None:
            Annotations.of(self).add_warning_v2(
                MIGRATION_HOOK_NEEDS_REGISTRY_ID,
                "migration_hook=true but the service has no registry (redis_url): no migration hook is installed, "
                "so ECS stops all blue tasks together after the bake and their clients reconnect at once. Pass "
                "redis_url (the hook reads heartbeats and writes drain notices there) or set migration_hook=false.",
            )
            return None
        hook = MigrationHook(
            self,
            "MigrationHook",
            vpc=vpc,
            cluster=self._cluster,
            service_name=self._service_name,
            settings=self._settings,
            registry_url=redis_url,
        )
        self._service.add_lifecycle_hook(hook.target)
        return hook

    def _create_infrastructure_role(self) -> iam.Role:
        """The role ECS assumes to rewrite the production and test listener rules during a traffic shift."""
        role = iam.Role(
            self,
            "DeploymentRole",
            assumed_by=iam.ServicePrincipal("ecs.amazonaws.com"),
            description="ECS shifts the WebSocket service's traffic between its target groups with this role",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(INFRASTRUCTURE_POLICY)],
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{INFRASTRUCTURE_POLICY}]",
            "ECS's blue/green, linear and canary deployments need its infrastructure policy for load balancers, "
            "which AWS keeps in step with the calls the deployment makes.",
        )
        return role

    def use_target_group(
        self, target_group: elbv2.IApplicationTargetGroup, load_balancer: elbv2.IApplicationLoadBalancer | None = None
    ) -> None:
        """Add the scaling policies that need the load balancer's target group (``attach`` calls this).

        Idempotent: the policies are added on the first call that can make them.
        """
        waiting = []
        for signal in self._pending_signals:
            if signal.kind == "connections_per_target" and load_balancer is None:
                waiting.append(signal)
                continue
            signal.add_to(self._scaling, self._settings, target_group=target_group, load_balancer=load_balancer)
        self._pending_signals = waiting

    def skipped_rules(self) -> list[str]:
        """``rule-id: reason`` of each settings rule this construct did not judge (see ``apply_settings``)."""
        return self._verdict.skipped_rules()

    def allow_publish_from(self, peer: ec2.ISecurityGroup) -> None:
        """Open the publish endpoint (``publish_port``) to ``peer`` only; the first call also maps the
        port and gives the server its key from Secrets Manager (generated unless one was passed)."""
        if self._settings.own_server:
            raise ValueError(_PUBLISH_NEEDS_REFERENCE)
        port = self._settings["publish_port"]
        if not port:
            raise ValueError("the publish endpoint is off (publish_port=0): set publish_port to a port first")
        if not self._publish_mapped:
            if self._publish_key is None:
                generated = secretsmanager.Secret(
                    self,
                    "PublishKey",
                    description="Key of the stickyws HTTP publish endpoint (POST /v1/publish)",
                    generate_secret_string=secretsmanager.SecretStringGenerator(
                        password_length=48, exclude_punctuation=True
                    ),
                )
                acknowledge(
                    generated,
                    "AwsSolutions-SMG4",
                    "Rotating the publish key needs every publishing backend to read the new version first; "
                    "rotate it deliberately, then deploy.",
                )
                self._publish_key = generated
            self._container.add_port_mappings(ecs.PortMapping(container_port=port, protocol=ecs.Protocol.TCP))
            self._container.add_secret(ENV_PUBLISH_KEY, ecs.Secret.from_secrets_manager(self._publish_key))
            self._publish_mapped = True
        self._security_group.add_ingress_rule(
            peer, ec2.Port.tcp(port), "stickyws publish endpoint (POST /v1/publish), never routed by the ALB"
        )

    @property
    def publish_key(self) -> secretsmanager.ISecret | None:
        """The publish endpoint's key (``None`` until a publisher is allowed)."""
        return self._publish_key

    def _grant_task_protection(self) -> None:
        """Let the tasks protect and release themselves (ECS agent endpoint, ``scale_in_protection``)."""
        stack = Stack.of(self)
        tasks = stack.format_arn(
            service="ecs", resource="task", resource_name=f"{self._cluster.cluster_name}/*",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )  # fmt: skip
        role = self._task_definition.task_role
        role.add_to_principal_policy(iam.PolicyStatement(actions=list(TASK_PROTECTION_ACTIONS), resources=[tasks]))
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{nag_text(stack, tasks)}]",
            "Scale-in protection on the tasks of the service's cluster: a task's id is only known at run time.",
        )

    def grant_describe_target_health(self, target_group: elbv2.ITargetGroup | None = None) -> None:
        """Let the tasks call ``elasticloadbalancing:DescribeTargetHealth`` (the server's optional drain trigger).

        With ``target_group`` the container also gets ``STICKYWS_TARGET_GROUP_ARN``, which the reference
        server's poller (``drain_poll_target_health=true``) needs to find its own target. Idempotent.
        Your own server gets the permission only: give it the ARN under the name it reads, e.g.
        ``service.container.add_environment("TARGET_GROUP_ARN", target_group.target_group_arn)``.
        """
        if target_group is not None and self._settings.own_server:
            raise ValueError(
                f"{ENV_TARGET_GROUP_ARN} is the reference server's variable: call grant_describe_target_health() "
                "without target_group and add the ARN with container.add_environment(<the name your server reads>, "
                "target_group.target_group_arn)"
            )
        if not self._describe_target_health_granted:
            self._task_definition.task_role.add_to_principal_policy(
                iam.PolicyStatement(actions=["elasticloadbalancing:DescribeTargetHealth"], resources=["*"])
            )
            acknowledge(
                self._task_definition.task_role,
                "AwsSolutions-IAM5[Resource::*]",
                "elasticloadbalancing:DescribeTargetHealth supports no resource-level permissions.",
            )
            self._describe_target_health_granted = True
        if target_group is not None:
            self._container.add_environment(ENV_TARGET_GROUP_ARN, target_group.target_group_arn)

    def metric(self, metric_name: str, *, statistic: str = "Average") -> cloudwatch.Metric:
        """A server metric (``metrics_namespace``, dimension ``ServiceName``) over one minute."""
        return cloudwatch.Metric(
            namespace=self._settings["metrics_namespace"],
            metric_name=metric_name,
            dimensions_map={SERVICE_NAME_DIMENSION: self._service_name},
            statistic=statistic,
            period=METRIC_PERIOD,
        )

    @property
    def connections_metric(self) -> cloudwatch.Metric:
        """Average of ``ActiveConnections`` over the service's tasks: connections per task."""
        return self.metric(ACTIVE_CONNECTIONS)

    @property
    def cluster(self) -> ecs.ICluster:
        """The cluster (new or given)."""
        return self._cluster

    @property
    def service(self) -> ecs.FargateService:
        """The Fargate service."""
        return self._service

    @property
    def deployment_strategy(self) -> str:
        """The ``deployment_strategy`` setting: ``rolling``, ``blue_green``, ``linear`` or ``canary``."""
        return self._settings.deployment.deployment_strategy

    @property
    def migration_hook(self) -> MigrationHook | None:
        """The migration hook (blue/green, linear, canary with ``migration_hook`` and a registry); else ``None``."""
        return self._migration_hook

    @property
    def infrastructure_role(self) -> iam.Role | None:
        """The role ECS shifts traffic with (blue/green, linear, canary); ``None`` for a rolling service."""
        return self._infrastructure_role

    @property
    def service_name(self) -> str:
        """The service name, fixed at synth (a literal unless one was passed as a token)."""
        return self._service_name

    @property
    def task_definition(self) -> ecs.FargateTaskDefinition:
        """The task definition."""
        return self._task_definition

    @property
    def container(self) -> ecs.ContainerDefinition:
        """The ``server`` container."""
        return self._container

    @property
    def security_group(self) -> ec2.SecurityGroup:
        """The tasks' security group (no ingress until the load balancer's ``attach``)."""
        return self._security_group

    @property
    def jwt_secret(self) -> secretsmanager.ISecret | None:
        """The token signing key's secret (given, or generated for the reference server); ``None`` if none."""
        return self._jwt_secret

    @property
    def settings(self) -> Settings:
        """The settings this service was built from (``attach`` judges them with the load balancer's)."""
        return self._settings

    @property
    def health_check(self) -> ContainerHealthCheck:
        """The container health check chosen (or the default of the server mode)."""
        return self._health_check

    @property
    def scaling_signals(self) -> tuple[ScalingSignal, ...]:
        """The target-tracking signals of the service (given, or the default of the server mode)."""
        return self._signals

    @property
    def log_group(self) -> logs.LogGroup:
        """The container log group."""
        return self._log_group

    @property
    def scaling(self) -> ecs.ScalableTaskCount:
        """The service's scalable task count (one target-tracking policy per scaling signal)."""
        return self._scaling

    @property
    def unwired_signals(self) -> tuple[ScalingSignal, ...]:
        """Signals still waiting for the load balancer's target group (synth fails while any is left)."""
        return tuple(self._pending_signals)


_PUBLISH_NEEDS_REFERENCE: Final = (
    "the publish endpoint (publishers=, publish_key=, allow_publish_from) is the reference server's "
    "POST /v1/publish: drop it with server_mode=own, and open your own server's port with "
    "service.security_group.add_ingress_rule(...)"
)


def _check_props(
    settings: Settings,
    *,
    image: ecs.ContainerImage | None,
    jwt_secret_env: str,
    publishers: Sequence[ec2.ISecurityGroup],
    publish_key: secretsmanager.ISecret | None,
    signals: Sequence[ScalingSignal],
) -> None:
    """Refuse combinations that cannot work, with the fix."""
    if isinstance(signals, ScalingSignal):
        raise ValueError("scaling takes a list of signals, e.g. scaling=[ScalingSignal.cpu()]")
    if not signals:
        raise ValueError("scaling=[] leaves the task count fixed: name at least one signal, e.g. ScalingSignal.cpu()")
    ids = [s.policy_id for s in signals]
    if len(set(ids)) != len(ids):
        raise ValueError(f"scaling names one signal twice ({', '.join(ids)}): keep one of each (name metrics apart)")
    if settings.own_server:
        if image is None:
            raise ValueError(
                "server_mode=own needs your server's image: pass image=ecs.ContainerImage.from_registry(...) "
                "(the default image is the reference server)"
            )
        if publishers or publish_key is not None:
            raise ValueError(_PUBLISH_NEEDS_REFERENCE)
        if any(s.kind == "server_connections" for s in signals):
            raise ValueError(
                "ScalingSignal.server_connections() follows the reference server's ActiveConnections metric, which "
                "your own server does not emit: use connections_per_target(), requests_per_target(n), cpu() or "
                "metric(your_metric, target)"
            )
        return
    if jwt_secret_env != ENV_JWT_SECRET:
        raise ValueError(
            f"jwt_secret_env={jwt_secret_env!r}: the reference server reads the signing key from {ENV_JWT_SECRET} "
            "only; drop jwt_secret_env (or set server_mode=own for your own server)"
        )
    if publishers and not settings["publish_port"]:
        raise ValueError("publishers need the publish endpoint: set publish_port to a port (e.g. 8081), not 0")


@jsii.implements(IValidation)
class _SignalsWired:
    """Synth-time check that every scaling signal on the load balancer's metrics found its target group."""

    def __init__(self, service: WebSocketFargateService) -> None:
        self._service = service

    def validate(self) -> list[str]:
        return [
            f"scaling signal {signal.describe()} needs the load balancer's target group: attach the service with "
            "StickyWebSocketLoadBalancer.attach(service), or pass target_group= (and load_balancer=) to "
            "WebSocketFargateService"
            for signal in self._service.unwired_signals
        ]
