"""Deployment checks of the WebSocket target groups: the service is registered with them, and they do not
use the target optimizer.
"""

from __future__ import annotations

from stickyws.audit.checks.engine import LB, SERVICE, Context, Outcome, Status, define_check, short_name


@define_check(
    "service-behind-target-group", "The ECS service is registered with the WebSocket target group.", LB, SERVICE
)
def _service_registered(ctx: Context) -> Outcome:
    svc, tg = ctx.view.service, ctx.view.target_group
    if svc is None or tg is None:
        what = "no ECS service read" if svc is None else "no target group read"
        return Status.WARN, what, "audit with --stack-name, or check the service by hand"
    if tg.id in svc.target_groups:
        return Status.PASS, f"{short_name(svc.id)} -> {short_name(tg.id)}", ""
    return (
        Status.FAIL,
        f"{short_name(svc.id)} is registered with {', '.join(map(short_name, svc.target_groups)) or 'no target group'}",
        "register the service with the target group the Upgrade rule forwards to (StickyWebSocketLoadBalancer.attach)",
    )


@define_check(
    "target-optimizer-off",
    "The WebSocket target groups do not use the ALB target optimizer, which does not support WebSockets.",
    LB,
)
def _target_optimizer(ctx: Context) -> Outcome:
    groups = ctx.view.target_groups
    if not groups:
        return Status.WARN, "no target group read", ""
    on = [f"{short_name(g.id)} (TargetControlPort={g.target_control_port})" for g in groups if g.target_control_port]
    if on:
        return (
            Status.FAIL,
            f"target optimizer on for {', '.join(on)}: it does not support WebSockets",
            "create the target group without TargetControlPort (it is fixed at creation: replace the target "
            "group); StickyWebSocketLoadBalancer never sets it",
        )
    return Status.PASS, f"off for {', '.join(short_name(g.id) for g in groups)}", ""
