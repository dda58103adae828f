"""The normalized view of one sticky WebSocket deployment, whatever it was read from.

A template (:mod:`stickyws.audit.from_template`) and a live account
(:mod:`stickyws.audit.from_aws`) are both read into a :class:`DeploymentView`; the checks
(:mod:`stickyws.audit.checks`) only ever see this view. Values keep the shape AWS returns:
load balancer and target group attributes are ``{key: text}`` exactly as
``DescribeLoadBalancerAttributes`` lists them (``"true"``, ``"120"``); identifiers are ARNs or
ids for a live read and logical ids for a template, and are only ever compared within one view.

``None`` means "not read" (the resource or field was absent or could not be resolved), never
"off". A template that omits an attribute leaves it out of ``attributes``: the mapping layer
(:mod:`stickyws.audit.mapping`) then applies the AWS default, as AWS itself would.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from stickyws.settings import LABEL_SERVER_ENV, LABEL_SERVER_MODE, Settings, SettingsError


@dataclass(frozen=True)
class RuleCondition:
    """One listener-rule condition: ``field`` is ``http-header``, ``path-pattern``, ``host-header``, ...

    ``header_name`` is set for ``http-header`` conditions only.
    """

    field: str
    values: tuple[str, ...]
    header_name: str | None = None


@dataclass(frozen=True)
class Action:
    """A listener or rule action: ``forward`` (to ``target_groups``), ``redirect``, ``fixed-response``, ...

    A weighted forward (``ForwardConfig``) keeps each target group's ``weights`` (same order; ``None``
    where unset) and ``group_stickiness``: whether its target-group stickiness (``AWSALBTG``) is on
    (``None``: not said, which AWS treats as off).
    """

    type: str
    target_groups: tuple[str, ...] = ()
    redirect_protocol: str | None = None
    weights: tuple[int | None, ...] = ()
    group_stickiness: bool | None = None

    @property
    def weighted(self) -> bool:
        """Whether this forward spreads requests over two or more target groups by weight."""
        return self.type == "forward" and len(self.target_groups) > 1

    def heaviest_target_group(self) -> str | None:
        """The target group with the largest weight (the first one when no weight is given)."""
        if not self.target_groups:
            return None
        weights = [w if w is not None else 1 for w in self.weights] or [1] * len(self.target_groups)
        pairs = list(zip(self.target_groups, weights, strict=False))
        return max(pairs, key=lambda pair: pair[1])[0]


@dataclass(frozen=True)
class ListenerRule:
    """A listener rule; the listener's default actions are the rule with ``priority == "default"``."""

    priority: str
    conditions: tuple[RuleCondition, ...]
    actions: tuple[Action, ...]
    id: str | None = None

    @property
    def is_default(self) -> bool:
        """Whether this is the listener's default rule (its default actions)."""
        return self.priority == "default"

    @property
    def matches_websocket_upgrade(self) -> bool:
        """Whether a condition requires the header ``Upgrade`` to contain ``websocket`` (any case)."""
        return any(
            c.field == "http-header"
            and (c.header_name or "").lower() == "upgrade"
            and any("websocket" in v.lower() for v in c.values)
            for c in self.conditions
        )


@dataclass(frozen=True)
class Listener:
    """A load balancer listener and all of its rules, default rule last."""

    id: str
    protocol: str
    port: int | None
    ssl_policy: str | None
    rules: tuple[ListenerRule, ...]

    @property
    def label(self) -> str:
        """``HTTPS:443``-style name used in the report."""
        return f"{self.protocol}:{self.port if self.port is not None else '?'}"

    @property
    def default_rule(self) -> ListenerRule | None:
        """The rule that holds the default actions, if read."""
        return next((r for r in self.rules if r.is_default), None)

    @property
    def forwards(self) -> bool:
        """Whether any rule of the listener forwards to a target group (a redirect-only listener does not)."""
        return any(a.type == "forward" for r in self.rules for a in r.actions)


#: ``LoadBalancer.origin``: ``StickyWebSocketLoadBalancer`` created the load balancer (and its listeners and logs).
ORIGIN_CREATED: Final = "created"
#: ``LoadBalancer.origin``: the construct was given the load balancer (``load_balancer=``) or one of its listeners
#: (``listener=``); the load balancer itself, its logs and its other listeners are its owner's.
ORIGIN_SUPPLIED: Final = "supplied"


@dataclass(frozen=True)
class LoadBalancer:
    """An Application Load Balancer: its attributes, security groups and listeners.

    ``origin`` is :data:`ORIGIN_CREATED`, :data:`ORIGIN_SUPPLIED`, or ``None`` when the source does not
    show a ``StickyWebSocketLoadBalancer`` at all (another tool's stack, or an ARN read on its own).
    """

    id: str
    name: str | None
    type: str
    scheme: str | None
    security_groups: tuple[str, ...]
    attributes: Mapping[str, str] = field(default_factory=dict)
    listeners: tuple[Listener, ...] = ()
    origin: str | None = None

    @property
    def label(self) -> str:
        """The load balancer's name, else its id, as the report names it."""
        return self.name or self.id


#: The construct's child ids, as they appear in CDK construct paths and (with a hash) in logical ids.
CONSTRUCT_RULE_ID: Final = "WebSocketUpgradeRule"
CONSTRUCT_LOAD_BALANCER_ID: Final = "LoadBalancer"
_CDK_HASH = "[0-9A-F]{8}"


def load_balancer_origin(load_balancer: tuple[str, str | None], rules: Iterable[tuple[str, str | None]]) -> str | None:
    """Whether ``StickyWebSocketLoadBalancer`` created the load balancer or was given it; ``None``: not its rule.

    ``load_balancer`` and each of ``rules`` are ``(logical id, CDK construct path or None)``. The
    construct's ``Upgrade: websocket`` rule has the child id ``WebSocketUpgradeRule``, and a load
    balancer it creates is its sibling ``LoadBalancer``. With construct paths (template metadata
    ``aws:cdk:path``) the parent paths are compared; without them, the logical ids, which CDK forms
    from the same path followed by an 8-character hash.
    """
    lb_id, lb_path = load_balancer
    found = False
    for rule_id, rule_path in rules:
        suffix = f"/{CONSTRUCT_RULE_ID}/Resource"
        if rule_path and rule_path.endswith(suffix):
            found = True
            if lb_path and lb_path.startswith(rule_path[: -len(suffix)] + "/"):
                return ORIGIN_CREATED
            continue
        match = re.fullmatch(f"(.*){CONSTRUCT_RULE_ID}{_CDK_HASH}", rule_id)
        if match and not rule_path:
            found = True
            prefix = match.group(1)
            # CDK leaves out a path component equal to the one before it: a construct with the id
            # "LoadBalancer" names its load balancer "LoadBalancer<hash>", not "LoadBalancerLoadBalancer<hash>".
            siblings = {prefix + CONSTRUCT_LOAD_BALANCER_ID}
            if prefix.endswith(CONSTRUCT_LOAD_BALANCER_ID):
                siblings.add(prefix)
            if any(re.fullmatch(f"{re.escape(sibling)}{_CDK_HASH}", lb_id) for sibling in siblings):
                return ORIGIN_CREATED
    return ORIGIN_SUPPLIED if found else None


def websocket_target_group(load_balancer: LoadBalancer) -> str | None:
    """The target group the first ``Upgrade: websocket`` rule forwards to, else the heaviest of the first
    weighted forward (a blue/green production rule), else the first forwarded one."""
    rules = [r for listener in load_balancer.listeners for r in listener.rules]
    upgrade = [r for r in rules if not r.is_default and r.matches_websocket_upgrade]
    weighted = [r for r in rules if any(a.weighted for a in r.actions)]
    for rule in upgrade + weighted + rules:
        for action in rule.actions:
            if action.type == "forward" and action.target_groups:
                return action.heaviest_target_group()
    return None


def find_rule(load_balancer: LoadBalancer, rule_id: str) -> tuple[Listener, ListenerRule] | None:
    """The listener rule whose id (logical id or ARN) is ``rule_id``, with its listener."""
    for listener in load_balancer.listeners:
        for rule in listener.rules:
            if rule.id == rule_id:
                return listener, rule
    return None


@dataclass(frozen=True)
class HealthCheck:
    """The target group's health check; a field is ``None`` when the source leaves it to AWS."""

    path: str | None = None
    interval_s: int | None = None
    timeout_s: int | None = None
    healthy_threshold: int | None = None
    unhealthy_threshold: int | None = None
    matcher: str | None = None


@dataclass(frozen=True)
class TargetGroup:
    """The target group that holds the WebSocket server tasks."""

    id: str
    protocol: str | None
    protocol_version: str | None
    port: int | None
    target_type: str | None
    health_check: HealthCheck = field(default_factory=HealthCheck)
    attributes: Mapping[str, str] = field(default_factory=dict)
    #: ``TargetControlPort``: set when the ALB target optimizer is on (it can only be set at creation).
    target_control_port: int | None = None
    #: Targets registered with the group and those of them ``healthy`` (``DescribeTargetHealth``): a live read only;
    #: ``None`` when not read (a template, or no permission).
    registered_targets: int | None = None
    healthy_targets: int | None = None


@dataclass(frozen=True)
class IngressPermission:
    """One inbound permission of a security group.

    ``sources`` are ``sg:<id>`` (another security group), ``cidr:<block>`` or ``prefix-list:<id>``.
    """

    protocol: str
    from_port: int | None
    to_port: int | None
    sources: tuple[str, ...]


@dataclass(frozen=True)
class SecurityGroup:
    """A security group and its inbound permissions (``None``: not readable from the source)."""

    id: str
    ingress: tuple[IngressPermission, ...] | None = ()


@dataclass(frozen=True)
class ShiftTarget:
    """What ECS shifts traffic with (a load balancer entry's ``advancedConfiguration``): ids or ARNs."""

    target_group: str
    alternate_target_group: str | None
    production_rule: str | None
    test_rule: str | None = None


#: ECS's deployment strategies as AWS spells them, and the ``deployment_strategy`` setting of each.
STRATEGY_SETTINGS: Final = {"ROLLING": "rolling", "BLUE_GREEN": "blue_green", "LINEAR": "linear", "CANARY": "canary"}


@dataclass(frozen=True)
class Service:
    """ECS service deployment settings; ``None`` means the source did not say.

    ``strategy`` is ECS's ``ROLLING``, ``BLUE_GREEN``, ``LINEAR`` or ``CANARY`` (``None``: unset, which
    ECS takes as rolling); ``step_percent``/``step_bake_time_min`` come from the linear or canary
    configuration; ``lifecycle_stages`` are the stages of every lifecycle hook; ``shift_targets`` the
    load balancer entries that name an alternate target group.
    """

    id: str
    desired_count: int | None = None
    min_healthy_percent: int | None = None
    max_percent: int | None = None
    circuit_breaker_enabled: bool | None = None
    circuit_breaker_rollback: bool | None = None
    health_check_grace_s: int | None = None
    target_groups: tuple[str, ...] = ()
    security_groups: tuple[SecurityGroup, ...] = ()
    strategy: str | None = None
    bake_time_min: int | None = None
    step_percent: float | None = None
    step_bake_time_min: int | None = None
    lifecycle_stages: tuple[str, ...] = ()
    shift_targets: tuple[ShiftTarget, ...] = ()

    @property
    def shifts_traffic(self) -> bool:
        """Whether ECS deploys it blue/green, linear or canary (two target groups, a weighted production rule)."""
        return (self.strategy or "ROLLING").upper() != "ROLLING"

    @property
    def strategy_setting(self) -> str:
        """The ``deployment_strategy`` setting of :attr:`strategy` (``rolling`` when unset)."""
        return STRATEGY_SETTINGS.get((self.strategy or "ROLLING").upper(), (self.strategy or "").lower())


@dataclass(frozen=True)
class Container:
    """The server container: its stopTimeout, its Docker labels and the settings in its environment.

    ``environment`` holds only the variables that carry settings (other variables may hold secrets
    and are never kept): every ``STICKYWS_*`` one, and those the ``stickyws.server-env`` label names
    (:func:`settings_variables`), whose value is known text; a template value that is a
    CloudFormation expression is left out and named in the view's notes. ``labels`` holds the
    ``stickyws.*`` Docker labels. ``registry_url`` says whether ``REDIS_URL`` is set (its value,
    which may hold a password, is not kept).
    """

    name: str
    stop_timeout_s: int | None
    environment: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    registry_url: bool = False


#: Prefix of the settings' variables (``STICKYWS_<NAME>``) and of the Docker labels the constructs render.
ENV_PREFIX: Final = "STICKYWS_"
LABEL_PREFIX: Final = "stickyws."


def settings_variables(labels: Mapping[str, str]) -> frozenset[str]:
    """The environment variables other than ``STICKYWS_*`` that carry settings, per the container's labels.

    Those named in ``stickyws.server-env`` for your own server; none for the reference server or for
    a label that does not parse (the ``server-env`` rule reports that).
    """
    if labels.get(LABEL_SERVER_MODE) != "own" or not labels.get(LABEL_SERVER_ENV):
        return frozenset()
    try:
        settings = Settings().with_overrides({"server_mode": "own", "server_env": labels[LABEL_SERVER_ENV]})
    except SettingsError:
        return frozenset()
    return frozenset(settings.told_env().values())


def keeps_variable(name: str, labels: Mapping[str, str]) -> bool:
    """Whether a reader keeps container variable ``name``: it carries a setting (see :class:`Container`)."""
    return name.startswith(ENV_PREFIX) or name in settings_variables(labels)


@dataclass(frozen=True)
class TaskDefinition:
    """The task definition the service runs."""

    id: str
    cpu: str | None = None
    memory_mib: str | None = None
    container: Container | None = None


@dataclass(frozen=True)
class Registry:
    """The connection registry's cache: shape, encryption and authentication; ``None``: not read.

    ``mode`` is ``single`` (a replication group, cluster mode off), ``cluster`` (cluster mode on)
    or ``serverless``; ``auth`` is ``iam`` or ``token`` (an RBAC user group whose non-default user
    authenticates that way; a replication group AUTH token also counts as ``token``), ``none``, or
    ``None`` when the user group was named but could not be read (``user_groups`` says which).
    """

    id: str
    mode: str
    engine: str | None = None
    engine_version: str | None = None
    node_type: str | None = None
    shards: int | None = None
    replicas_per_shard: int | None = None
    multi_az: bool | None = None
    automatic_failover: bool | None = None
    transit_encryption: bool | None = None
    transit_encryption_mode: str | None = None
    at_rest_encryption: bool | None = None
    auth: str | None = None
    user_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeploymentView:
    """Everything the auditor read about one deployment; any part may be missing.

    ``source`` says what was read (``template cdk.out/X.template.json``, ``stack NAME``, an ARN);
    ``notes`` lists what could not be read or resolved, in words the report prints.
    ``alternate_target_group`` is the green target group of a traffic-shifting service.
    ``registry_declared`` says the source has a registry (an ElastiCache cache in the template or
    stack, or one named with ``--registry-id``) even when it could not be read.
    """

    source: str
    load_balancer: LoadBalancer | None = None
    target_group: TargetGroup | None = None
    service: Service | None = None
    task_definition: TaskDefinition | None = None
    notes: tuple[str, ...] = ()
    registry: Registry | None = None
    registry_declared: bool = False
    #: The service's alternate (green) target group of a blue/green, linear or canary deployment, if read.
    alternate_target_group: TargetGroup | None = None

    @property
    def target_groups(self) -> tuple[TargetGroup, ...]:
        """The WebSocket target group and the alternate one, those that were read."""
        return tuple(g for g in (self.target_group, self.alternate_target_group) if g is not None)
