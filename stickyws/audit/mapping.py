"""What a deployment shows of each setting: :func:`observe` reads a view through the AWS names table.

The table itself (attribute keys, property names, AWS defaults) lives next to the settings model,
in :mod:`stickyws.settings.aws_names`; its names are re-exported here for the auditor's report.
:func:`observe` turns a :class:`~stickyws.audit.view.DeploymentView` into one
:class:`Observation` per setting it can see. An attribute that the source omits takes the AWS
default, because that is what AWS applies; the observation says so in ``where``. A setting whose
resource was not read is not observed at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from stickyws.audit.view import DeploymentView
from stickyws.settings.aws_names import (
    APP_COOKIE_NAME_KEY,
    FARGATE_STOP_TIMEOUT_DEFAULT,
    HEALTH_CHECK_FIELDS,
    INFRA_SETTINGS,
    LOAD_BALANCER_ATTRIBUTES,
    REGISTRY_FIELDS,
    SERVICE_FIELDS,
    STICKINESS_DURATION_DEFAULT,
    STICKINESS_DURATION_KEYS,
    TARGET_GROUP_ATTRIBUTES,
)
from stickyws.settings.rules import DEFAULT_ENGINE_VERSIONS

__all__ = [
    "APP_COOKIE_NAME_KEY",
    "DEPLOYMENT_FIELDS",
    "FARGATE_STOP_TIMEOUT_DEFAULT",
    "HEALTH_CHECK_FIELDS",
    "INFRA_SETTINGS",
    "LOAD_BALANCER_ATTRIBUTES",
    "REGISTRY_FIELDS",
    "SERVICE_FIELDS",
    "STICKINESS_DURATION_DEFAULT",
    "STICKINESS_DURATION_KEYS",
    "TARGET_GROUP_ATTRIBUTES",
    "Observation",
    "observe",
]

#: (setting, Service field, where it is read, AWS default) -- the ECS service's deployment strategy.
#: The step fields are read only for the strategy that has them (linear or canary configuration). An unset
#: strategy (ECS deploys rolling) is not observed: the settings keep their own value, rolling by default.
DEPLOYMENT_FIELDS: tuple[tuple[str, str, str, str | None], ...] = (
    ("deployment_strategy", "strategy_setting", "deploymentConfiguration.strategy", None),
    ("bake_time_min", "bake_time_min", "deploymentConfiguration.bakeTimeInMinutes", None),
    ("traffic_step_percent", "step_percent", "linear/canaryConfiguration stepPercent (canaryPercent)", None),
    ("step_bake_time_min", "step_bake_time_min", "linear/canaryConfiguration stepBakeTimeInMinutes", None),
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
        for name, attr, prop, strategy_default in DEPLOYMENT_FIELDS:
            unset = name == "deployment_strategy" and svc.strategy is None  # ECS then deploys rolling
            value = None if unset else getattr(svc, attr)
            text = f"{value:g}" if isinstance(value, float) else None if value is None else str(value)
            put(name, text, f"ECS service {prop}", strategy_default)
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
