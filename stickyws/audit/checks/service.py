"""Deployment checks of the ECS service, its tasks and its deployments: the circuit breaker, task ingress,
the container's settings against the infrastructure's, and a hook that moves blue's open WebSockets.
"""

from __future__ import annotations

from stickyws.audit.checks.engine import LB, SERVER, SERVICE, Context, Outcome, Status, define_check, short_name
from stickyws.audit.checks.runner import variable_of
from stickyws.audit.mapping import INFRA_SETTINGS
from stickyws.settings import render_value


@define_check("deployment-circuit-breaker", "The ECS service rolls back failed deployments (circuit breaker).", SERVICE)
def _circuit_breaker(ctx: Context) -> Outcome:
    svc = ctx.view.service
    if svc is None:
        return Status.WARN, "no ECS service read (only its task definition)", "check the service by hand"
    if svc.shifts_traffic:
        return (
            Status.SKIP,
            f"deployment_strategy={svc.strategy_setting}: the circuit breaker is rolling-only (ECS rolls a "
            "blue/green, linear or canary deployment back through its own stages and alarms)",
            "",
        )
    fix = (
        f"enable the deployment circuit breaker with rollback on the ECS service {short_name(svc.id)} "
        "(WebSocketFargateService does)"
    )
    if svc.circuit_breaker_enabled and svc.circuit_breaker_rollback:
        return Status.PASS, "enabled, rollback on", ""
    if svc.circuit_breaker_enabled:
        return Status.WARN, "enabled, rollback off", fix
    return Status.FAIL, "not enabled" if svc.circuit_breaker_enabled is False else "not set", fix


@define_check("task-ingress-from-alb-only", "The tasks' security groups admit only the load balancer.", LB, SERVICE)
def _task_ingress(ctx: Context) -> Outcome:
    svc, lb = ctx.view.service, ctx.view.load_balancer
    if svc is None:
        return Status.WARN, "no ECS service read (only its task definition)", "check the service by hand"
    if lb is None:
        return Status.WARN, "no load balancer read", ""
    if not svc.security_groups:
        return (
            Status.FAIL,
            "the service has no security groups (awsvpc network configuration not read)",
            "give the service a security group that admits only the load balancer's "
            "(StickyWebSocketLoadBalancer.attach adds that ingress)",
        )
    unread = [g.id for g in svc.security_groups if g.ingress is None]
    if unread:
        return Status.WARN, f"ingress of {', '.join(unread)} not readable here", "check these groups by hand"
    allowed = {f"sg:{g}" for g in lb.security_groups}
    parts, bad = [], []
    for group in svc.security_groups:
        for perm in group.ingress or ():
            ports = perm.from_port if perm.from_port == perm.to_port else f"{perm.from_port}-{perm.to_port}"
            for source in perm.sources:
                parts.append(f"{group.id}: {perm.protocol} {ports} from {source}")
                if source not in allowed:
                    bad.append(f"{group.id} admits {source}")
    if bad:
        return Status.FAIL, "; ".join(bad), "remove every ingress rule except the one from the load balancer's group"
    if not parts:
        return (
            Status.FAIL,
            "no ingress at all: the load balancer cannot reach the tasks",
            "admit the load balancer's security group on the container port (StickyWebSocketLoadBalancer.attach does)",
        )
    return Status.PASS, "; ".join(parts), ""


@define_check("app-settings-match", "The settings the container runs with equal what the infrastructure does.", SERVER)
def _app_matches(ctx: Context) -> Outcome:
    own = ctx.app_settings.own_server
    if not ctx.from_container and not own:
        return (
            Status.WARN,
            "the container environment carries no STICKYWS_* settings: the reference server's settings are assumed",
            "render the environment with stickyws.settings.server_environment, or pass --assume NAME=VALUE",
        )
    mismatched = []
    compared = sorted((set(ctx.observed) & ctx.from_container) & INFRA_SETTINGS)
    for name in compared:
        infra, app = ctx.infra_settings[name], ctx.app_settings[name]
        if infra != app:
            mismatched.append(
                f"{name}: deployment {render_value(infra)} ({ctx.observed[name].where}), "
                f"container {variable_of(ctx.app_settings, name)}={render_value(app)}"
            )
    if mismatched:
        return (
            Status.FAIL,
            "; ".join(mismatched),
            "deploy infrastructure and container from one Settings object (the stack renders both; for your own "
            "server, stickyws.settings.server_environment renders what it is told)",
        )
    if own:
        told = ", ".join(f"{n} as {v}" for n, v in ctx.app_settings.told_env().items()) or "nothing"
        return (
            Status.PASS,
            f"your own server (server_mode=own) is told {told}; {len(compared)} of them also set on the "
            "infrastructure, all equal",
            "",
        )
    return Status.PASS, f"{len(compared)} settings agree, {len(ctx.from_container)} read from the container", ""


#: The lifecycle stage at which a hook can move blue's clients: production has shifted, blue still runs.
MOVE_CONNECTIONS_STAGE = "POST_PRODUCTION_TRAFFIC_SHIFT"


@define_check(
    "deployment-moves-blue-sockets",
    "A blue/green, linear or canary deployment has a lifecycle hook after the production shift that can move "
    "blue's open WebSockets before ECS stops blue.",
    SERVICE,
)
def _moves_blue_sockets(ctx: Context) -> Outcome:
    svc = ctx.view.service
    if svc is None:
        return Status.WARN, "no ECS service read (only its task definition)", "check the service by hand"
    if not svc.shifts_traffic:
        return Status.PASS, "rolling: tasks are replaced a few at a time, each drained first", ""
    bake = f"bake_time_min={svc.bake_time_min}" if svc.bake_time_min is not None else "the bake time"
    if MOVE_CONNECTIONS_STAGE in svc.lifecycle_stages:
        return (
            Status.PASS,
            f"deployment_strategy={svc.strategy_setting}: a lifecycle hook runs at {MOVE_CONNECTIONS_STAGE} "
            f"(it must move blue's clients to green before {bake} ends)",
            "",
        )
    stages = ", ".join(svc.lifecycle_stages) or "none"
    return (
        Status.WARN,
        f"deployment_strategy={svc.strategy_setting} with no lifecycle hook at {MOVE_CONNECTIONS_STAGE} "
        f"(hooks: {stages}): the weights move new handshakes only, so every open WebSocket stays on blue until "
        f"{bake} ends; then ECS stops all blue tasks together and cuts every one of those sockets at once",
        "use deployment_strategy=rolling, whose drain notice moves the clients of one task at a time; or add a "
        f"lifecycle hook at {MOVE_CONNECTIONS_STAGE} that moves blue's clients to green (docs/deployments.md)",
    )
