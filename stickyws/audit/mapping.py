"""Where each setting lives in a deployment, and what AWS uses when a source leaves it unset.

This is the auditor's one table from AWS names to the settings model's flat names (the
model itself says nothing about attribute keys). :func:`observe` turns a
:class:`~stickyws.audit.view.DeploymentView` into one :class:`Observation` per setting it can
see. An attribute that the source omits takes the AWS default, because that is what AWS
applies (``routing.http2.enabled`` omitted from a template means HTTP/2 *on*); the
observation says so in ``where``. A setting whose resource was not read is not observed at all.

AWS defaults below: Elastic Load Balancing and ECS API references (see
``/work/shared/reference/alb-websocket-facts.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

from stickyws.audit.view import DeploymentView
from stickyws.settings.rules import DEFAULT_ENGINE_VERSIONS

#: (setting, load balancer attribute key, AWS default text)
LOAD_BALANCER_ATTRIBUTES: tuple[tuple[str, str, str], ...] = (
    ("idle_timeout_s", "idle_timeout.timeout_seconds", "60"),
    ("http2_enabled", "routing.http2.enabled", "true"),
    ("client_keep_alive_s", "client_keep_alive.seconds", "3600"),
    ("drop_invalid_header_fields", "routing.http.drop_invalid_header_fields.enabled", "false"),
    ("desync_mitigation_mode", "routing.http.desync_mitigation_mode", "defensive"),
)

#: (setting, target group attribute key, AWS default text); the cookie keys depend on the type.
TARGET_GROUP_ATTRIBUTES: tuple[tuple[str, str, str], ...] = (
    ("deregistration_delay_s", "deregistration_delay.timeout_seconds", "300"),
    ("stickiness_enabled", "stickiness.enabled", "false"),
    ("stickiness_type", "stickiness.type", "lb_cookie"),
)
STICKINESS_DURATION_KEYS = {
    "lb_cookie": "stickiness.lb_cookie.duration_seconds",
    "app_cookie": "stickiness.app_cookie.duration_seconds",
}
STICKINESS_DURATION_DEFAULT = "86400"
APP_COOKIE_NAME_KEY = "stickiness.app_cookie.cookie_name"

#: (setting, HealthCheck field, target group property, AWS default text for an HTTP target group)
HEALTH_CHECK_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("health_check_path", "path", "HealthCheckPath", "/"),
    ("health_check_interval_s", "interval_s", "HealthCheckIntervalSeconds", "30"),
    ("health_check_timeout_s", "timeout_s", "HealthCheckTimeoutSeconds", "5"),
    ("healthy_threshold_count", "healthy_threshold", "HealthyThresholdCount", "5"),
    ("unhealthy_threshold_count", "unhealthy_threshold", "UnhealthyThresholdCount", "2"),
    ("health_check_matcher", "matcher", "Matcher.HttpCode", "200"),
)

#: (setting, Service field, ECS name, AWS default text or None when ECS has no default)
SERVICE_FIELDS: tuple[tuple[str, str, str, str | None], ...] = (
    ("desired_count", "desired_count", "desiredCount", None),
    ("min_healthy_percent", "min_healthy_percent", "deploymentConfiguration.minimumHealthyPercent", "100"),
    ("max_percent", "max_percent", "deploymentConfiguration.maximumPercent", "200"),
    ("health_check_grace_s", "health_check_grace_s", "healthCheckGracePeriodSeconds", "0"),
)

#: Fargate's stopTimeout when the container definition sets none.
FARGATE_STOP_TIMEOUT_DEFAULT = "30"

#: (setting, Registry field, where it is read) -- the connection registry's cache.
REGISTRY_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("registry_mode", "mode", "cluster mode / Serverless"),
    ("registry_engine", "engine", "Engine"),
    ("registry_engine_version", "engine_version", "EngineVersion (Serverless: MajorEngineVersion)"),
    ("registry_node_type", "node_type", "CacheNodeType"),
    ("registry_shards", "shards", "NumNodeGroups (node groups)"),
    ("registry_replicas_per_shard", "replicas_per_shard", "ReplicasPerNodeGroup (or NumCacheClusters - 1)"),
    ("registry_auth", "auth", "user group users' authentication type (or AuthToken)"),
)

#: Settings that describe the infrastructure (read from AWS resources) rather than the application.
INFRA_SETTINGS: frozenset[str] = frozenset(
    [s for s, _, _ in LOAD_BALANCER_ATTRIBUTES]
    + [s for s, _, _ in TARGET_GROUP_ATTRIBUTES]
    + ["stickiness_duration_s", "app_cookie_name"]
    + [s for s, _, _, _ in HEALTH_CHECK_FIELDS]
    + [s for s, _, _, _ in SERVICE_FIELDS]
    + ["stop_timeout_s", "task_cpu", "task_memory_mib"]
    + [s for s, _, _ in REGISTRY_FIELDS]
)


@dataclass(frozen=True)
class Observation:
    """One setting as read from the deployment: its raw text and where it came from."""

    name: str
    text: str
    where: str
    aws_default: bool = False


def observe(view: DeploymentView) -> dict[str, Observation]:
    """Every setting the view shows, by flat name; unread resources contribute nothing."""
    found: dict[str, Observation] = {}

    def put(name: str, text: str | None, where: str, default: str | None) -> None:
        if text is not None:
            found[name] = Observation(name, text, where)
        elif default is not None:
            found[name] = Observation(name, default, f"{where} unset: AWS default", aws_default=True)

    lb = view.load_balancer
    if lb is not None:
        for name, key, default in LOAD_BALANCER_ATTRIBUTES:
            put(name, lb.attributes.get(key), f"load balancer attribute {key}", default)
    tg = view.target_group
    if tg is not None:
        for name, key, default in TARGET_GROUP_ATTRIBUTES:
            put(name, tg.attributes.get(key), f"target group attribute {key}", default)
        kind = tg.attributes.get("stickiness.type", "lb_cookie")
        duration_key = STICKINESS_DURATION_KEYS.get(kind, STICKINESS_DURATION_KEYS["lb_cookie"])
        put(
            "stickiness_duration_s",
            tg.attributes.get(duration_key),
            f"target group attribute {duration_key}",
            STICKINESS_DURATION_DEFAULT,
        )
        if kind == "app_cookie":
            put("app_cookie_name", tg.attributes.get(APP_COOKIE_NAME_KEY, ""), f"attribute {APP_COOKIE_NAME_KEY}", None)
        for name, attr, prop, default in HEALTH_CHECK_FIELDS:
            value = getattr(tg.health_check, attr)
            put(name, None if value is None else str(value), f"target group {prop}", default)
    svc = view.service
    if svc is not None:
        for name, attr, prop, service_default in SERVICE_FIELDS:
            value = getattr(svc, attr)
            put(name, None if value is None else str(value), f"ECS service {prop}", service_default)
    task = view.task_definition
    if task is not None:
        put("task_cpu", task.cpu, "task definition cpu", None)
        put("task_memory_mib", task.memory_mib, "task definition memory", None)
        if task.container is not None:
            stop = task.container.stop_timeout_s
            put(
                "stop_timeout_s",
                None if stop is None else str(stop),
                f"container {task.container.name} stopTimeout",
                FARGATE_STOP_TIMEOUT_DEFAULT,
            )
    registry = view.registry
    if registry is not None:
        for name, attr, prop in REGISTRY_FIELDS:
            value = getattr(registry, attr)
            where = f"registry {registry.id} {prop}"
            if name == "registry_engine_version" and value is not None and _is_pinned_default(registry.engine, value):
                value, where = "", f"{where} = the pinned default"  # the setting's empty value means exactly this
            put(name, None if value is None else str(value), where, None)
    return found


def _is_pinned_default(engine: str | None, version: str) -> bool:
    """Whether ``version`` is the one a new registry of ``engine`` is pinned to (Serverless: its major)."""
    pinned = DEFAULT_ENGINE_VERSIONS.get((engine or "").lower())
    return pinned is not None and version in (pinned, pinned.split(".")[0])
