"""Rules of the ECS service: the task (stop timeout, Fargate size, counts, scaling) and its deployments
(capacity, the blue/green, linear or canary plan, open connections).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from stickyws.settings.findings import Finding
from stickyws.settings.rules.engine import REFERENCE, SERVER, SERVICE, _error, _info, _warning, define_rule

if TYPE_CHECKING:
    from stickyws.settings.model import Settings


@define_rule(
    "stop-timeout-covers-shutdown", "stopTimeout leaves the server the time it needs after SIGTERM.", SERVICE, SERVER
)
def _stop_timeout(s: Settings) -> Iterator[Finding]:
    stop, need = s.task.stop_timeout_s, s.server.shutdown_timeout_s
    if stop < need:
        yield _error(
            "stop-timeout-covers-shutdown",
            f"stop_timeout_s={stop} < shutdown_timeout_s={need:g}: SIGKILL arrives before the server is done",
            f"set stop_timeout_s >= {need:g} (Fargate allows 2-120) or lower shutdown_timeout_s",
            "stop_timeout_s",
            "shutdown_timeout_s",
        )
    yield _info(
        "stop-timeout-covers-shutdown",
        f"worst-case task stop: deregistration_delay_s + stop_timeout_s = "
        f"{s.target_group.deregistration_delay_s + stop} s",
        "deregistration_delay_s",
        "stop_timeout_s",
    )


# Fargate CPU units -> allowed memory (MiB): (lowest, highest, step).
_FARGATE_MEMORY = {
    256: ((512, 512, 1), (1024, 2048, 1024)),
    512: ((1024, 4096, 1024),),
    1024: ((2048, 8192, 1024),),
    2048: ((4096, 16384, 1024),),
    4096: ((8192, 30720, 1024),),
    8192: ((16384, 61440, 4096),),
    16384: ((32768, 122880, 8192),),
}


@define_rule("fargate-task-size", "Task CPU and memory form a pairing Fargate accepts.", SERVICE)
def _fargate_size(s: Settings) -> Iterator[Finding]:
    cpu, mem = s.task.task_cpu, s.task.task_memory_mib
    ranges = _FARGATE_MEMORY.get(cpu)
    if ranges is None:
        return  # in-range reports the CPU value itself
    if not any(lo <= mem <= hi and (mem - lo) % step == 0 for lo, hi, step in ranges):
        allowed = ", ".join(f"{lo}-{hi} step {step}" if lo != hi else str(lo) for lo, hi, step in ranges)
        yield _error(
            "fargate-task-size",
            f"task_memory_mib={mem} is not valid with task_cpu={cpu}",
            f"with task_cpu={cpu} use task_memory_mib in {allowed}",
            "task_cpu",
            "task_memory_mib",
        )


@define_rule("task-counts", "min_count <= desired_count <= max_count.", SERVICE)
def _task_counts(s: Settings) -> Iterator[Finding]:
    t = s.task
    if not t.min_count <= t.desired_count <= t.max_count:
        yield _error(
            "task-counts",
            f"min_count={t.min_count}, desired_count={t.desired_count}, max_count={t.max_count} are out of order",
            "keep min_count <= desired_count <= max_count",
            "min_count",
            "desired_count",
            "max_count",
        )


@define_rule("deployment-keeps-capacity", "Deployments start replacements before old tasks drain.", SERVICE)
def _deployment(s: Settings) -> Iterator[Finding]:
    t = s.task
    if t.min_healthy_percent < 100:
        yield _warning(
            "deployment-keeps-capacity",
            f"min_healthy_percent={t.min_healthy_percent}: deployments stop tasks before replacements "
            "exist, so their clients reconnect into reduced capacity",
            "set min_healthy_percent=100 and max_percent=200",
            "min_healthy_percent",
        )
    if t.min_healthy_percent >= 100 and t.max_percent <= 100:
        yield _error(
            "deployment-keeps-capacity",
            f"min_healthy_percent={t.min_healthy_percent} with max_percent={t.max_percent}: "
            "a deployment can neither stop nor start a task",
            "set max_percent above 100 (200 is usual)",
            "min_healthy_percent",
            "max_percent",
        )


#: CloudFormation refuses a deployment plan longer than this (bake and step bakes together).
MAX_DEPLOYMENT_PLAN_MIN = 33 * 60
#: ECS's bounds on a linear step and a canary step, in percent of new requests.
LINEAR_STEP_PERCENT = (3.0, 100.0)
CANARY_STEP_PERCENT = (0.1, 100.0)


def deployment_plan_min(s: Settings) -> float:
    """Minutes from the first traffic shift to blue's stop: the step bakes (linear, canary) and the bake."""
    d = s.deployment
    if d.deployment_strategy == "linear":
        steps = -(-100 // max(d.traffic_step_percent, 0.1))  # ceil: the last step may be short
        return float(steps * d.step_bake_time_min + d.bake_time_min)
    if d.deployment_strategy == "canary":
        return float(d.step_bake_time_min + d.bake_time_min)
    if d.deployment_strategy == "blue_green":
        return float(d.bake_time_min)
    return 0.0


@define_rule(
    "deployment-plan",
    "A blue/green, linear or canary plan has steps ECS accepts and fits CloudFormation's limit.",
    SERVICE,
)
def _deployment_plan(s: Settings) -> Iterator[Finding]:
    d = s.deployment
    strategy = d.deployment_strategy
    bounds = {"linear": LINEAR_STEP_PERCENT, "canary": CANARY_STEP_PERCENT}.get(strategy)
    if bounds is not None:
        lo, hi = bounds
        step = d.traffic_step_percent
        if not lo <= step <= hi or abs(step * 10 - round(step * 10)) > 1e-9:
            yield _error(
                "deployment-plan",
                f"traffic_step_percent={step:g} with deployment_strategy={strategy}: ECS takes {lo:g}-{hi:g} % "
                "in steps of 0.1",
                f"set traffic_step_percent within {lo:g}-{hi:g} (a multiple of 0.1)",
                "traffic_step_percent",
                "deployment_strategy",
            )
    total = deployment_plan_min(s)
    if total > MAX_DEPLOYMENT_PLAN_MIN:
        yield _error(
            "deployment-plan",
            f"deployment_strategy={strategy} plans {total:g} min of step bakes and bake, more than the "
            f"{MAX_DEPLOYMENT_PLAN_MIN} min (33 h) CloudFormation accepts",
            "lower bake_time_min or step_bake_time_min, or take larger traffic_step_percent steps",
            "bake_time_min",
            "step_bake_time_min",
            "traffic_step_percent",
        )


@define_rule(
    "migration-pace-covers-fleet",
    "The migration hook's pace can move a fleet of busy blue tasks within its window.",
    SERVICE,
)
def _migration_pace(s: Settings) -> Iterator[Finding]:
    d, t = s.deployment, s.task
    if d.deployment_strategy == "rolling":
        return
    clients = t.desired_count * t.target_connections_per_task
    needed_s = clients / d.migration_pace_per_s
    if needed_s > d.migration_window_s:
        yield _warning(
            "migration-pace-covers-fleet",
            f"desired_count x target_connections_per_task = {clients} clients at migration_pace_per_s="
            f"{d.migration_pace_per_s:g} take {needed_s:g} s, more than migration_window_s={d.migration_window_s}: "
            "cleanup cuts the clients still on blue",
            f"raise migration_pace_per_s to {clients / d.migration_window_s:g} or migration_window_s to {needed_s:.0f}",
            "migration_pace_per_s",
            "migration_window_s",
        )


@define_rule(
    "deployment-moves-connections",
    "A deployment moves open WebSockets to the new revision instead of cutting them.",
    SERVICE,
)
def _deployment_moves_connections(s: Settings) -> Iterator[Finding]:
    strategy = s.deployment.deployment_strategy
    if strategy != "rolling" and not s.deployment.migration_hook:
        yield _warning(
            "deployment-moves-connections",
            f"deployment_strategy={strategy} with migration_hook=false: the traffic shift moves new handshakes only; "
            "every open WebSocket stays on blue until ECS stops all blue tasks together after "
            f"bake_time_min={s.deployment.bake_time_min}, and then every one of them reconnects at once",
            "set migration_hook=true (the migration hook moves blue's clients at migration_pace_per_s after the "
            "production shift), or use deployment_strategy=rolling, whose drain notice moves the clients of one task "
            "at a time",
            "deployment_strategy",
            "migration_hook",
        )


@define_rule("scaling-below-limit", "The autoscaling target per task is below the connection limit.", SERVICE, SERVER)
def _scaling(s: Settings) -> Iterator[Finding]:
    target, limit = s.task.target_connections_per_task, s.server.max_connections
    if target > limit:
        yield _error(
            "scaling-below-limit",
            f"target_connections_per_task={target} > max_connections={limit}: tasks reject handshakes "
            "before autoscaling reacts",
            f"set target_connections_per_task below {limit} (about 70 % of it)",
            "target_connections_per_task",
            "max_connections",
        )


@define_rule(
    "scale-in-protection-renewal",
    "Scale-in protection outlasts the heartbeats that renew it.",
    SERVICE,
    REFERENCE,
)
def _scale_in_protection_renewal(s: Settings) -> Iterator[Finding]:
    if not s.task.scale_in_protection:
        return
    half_s = s.task.scale_in_protection_expires_min * 60 / 2
    beat_s = s.server.heartbeat_interval_s
    if beat_s >= half_s:
        yield _error(
            "scale-in-protection-renewal",
            f"heartbeat_interval_s={beat_s:g} >= half of scale_in_protection_expires_min="
            f"{s.task.scale_in_protection_expires_min} ({half_s:g} s): the server renews protection on a heartbeat "
            "once half of it has passed, so it would lapse between renewals",
            f"set scale_in_protection_expires_min >= {int(2 * beat_s // 60) + 1} or lower heartbeat_interval_s",
            "scale_in_protection_expires_min",
            "heartbeat_interval_s",
        )
