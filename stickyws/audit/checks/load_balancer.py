"""Deployment checks of the load balancer and its listener rules: the Upgrade rule, TLS, header dropping,
access logs, and the rules ECS shifts in a blue/green, linear or canary deployment (their actions, and whether
the production rule's live weights point at the target group that holds the service's tasks).
"""

from __future__ import annotations

from stickyws.audit.checks.engine import LB, SERVICE, Context, Outcome, Status, define_check, short_name
from stickyws.audit.view import ORIGIN_CREATED, ORIGIN_SUPPLIED, LoadBalancer, find_rule


def _on(lb: LoadBalancer, what: str, construct: str) -> str:
    """A fix that depends on who owns the load balancer.

    ``what`` says what to change on the load balancer itself; ``construct`` what
    ``StickyWebSocketLoadBalancer`` does for a load balancer it creates, naming its parameter. A load
    balancer the construct was given (``load_balancer=``/``listener=``) is its owner's, so the fix
    names that load balancer; when the source shows no construct, both are given.
    """
    name = short_name(lb.label)
    if lb.origin == ORIGIN_CREATED:
        return f"StickyWebSocketLoadBalancer {construct}"
    if lb.origin == ORIGIN_SUPPLIED:
        return f"on your load balancer {name}, which StickyWebSocketLoadBalancer was given and leaves to you: {what}"
    return f"on load balancer {name}: {what}. StickyWebSocketLoadBalancer {construct}"


_TLS_POLICY_HINT = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@define_check("upgrade-rule", "Every listener that forwards has an `Upgrade: websocket` rule to the target group.", LB)
def _upgrade_rule(ctx: Context) -> Outcome:
    lb, tg = ctx.view.load_balancer, ctx.view.target_group
    if lb is None:
        return Status.FAIL, "no load balancer read", "audit the stack or ARN of the WebSocket load balancer"
    serving = [listener for listener in lb.listeners if listener.forwards]
    if not serving:
        return Status.FAIL, "no listener forwards traffic", "add an HTTPS (or HTTP) listener that forwards"
    found, missing = [], []
    svc = ctx.view.service
    # A blue/green, linear or canary service's production rule carries the handshake (ECS shifts only it).
    production = {t.production_rule for t in svc.shift_targets} if svc is not None and svc.shifts_traffic else set()
    for listener in serving:
        rules = [r for r in listener.rules if not r.is_default and (r.matches_websocket_upgrade or r.id in production)]
        hit = next(
            (r for r in rules if tg is None or any(tg.id in a.target_groups for a in r.actions if a.type == "forward")),
            None,
        )
        if hit is None:
            missing.append(listener.label)
            found.append(f"{listener.label}: none")
        else:
            kind = " (the production rule)" if hit.id in production else ""
            found.append(f"{listener.label}: priority {hit.priority}{kind}")
    if missing:
        rule = (
            f"add a rule on {', '.join(missing)} matching http-header Upgrade=websocket that forwards to the target "
            "group"
        )
        return (
            Status.FAIL,
            "; ".join(found),
            _on(lb, f"{rule}, or pass that listener as listener= to StickyWebSocketLoadBalancer, which adds it",
                "adds it to the listeners it creates (upgrade_rule_priority sets its priority)"),
        )  # fmt: skip
    return Status.PASS, "; ".join(found), ""


@define_check("tls-policy", "HTTPS listeners use a TLS 1.3 security policy; plain HTTP only redirects.", LB)
def _tls_policy(ctx: Context) -> Outcome:
    lb = ctx.view.load_balancer
    if lb is None:
        return Status.FAIL, "no load balancer read", "audit the stack or ARN of the WebSocket load balancer"
    https = [listener for listener in lb.listeners if listener.protocol == "HTTPS"]
    clear = [listener.label for listener in lb.listeners if listener.protocol == "HTTP" and listener.forwards]
    if not https:
        return (
            Status.WARN,
            f"no HTTPS listener (HTTP only, demo mode): {', '.join(clear) or 'no listener'}",
            _on(lb, f"add an HTTPS listener with a certificate and SslPolicy {_TLS_POLICY_HINT}",
                "creates one with certificate_arn (or domain_name with hosted_zone) instead of http_only=True"),
        )  # fmt: skip
    weak = [(listener.label, listener.ssl_policy) for listener in https if "TLS13" not in (listener.ssl_policy or "")]
    found = ", ".join(f"{listener.label} {listener.ssl_policy or 'AWS default policy'}" for listener in https)
    if weak:
        listeners = ", ".join(label for label, _ in weak)
        return (
            Status.FAIL,
            found,
            _on(lb, f"set SslPolicy {_TLS_POLICY_HINT} on {listeners}",
                f"sets {_TLS_POLICY_HINT} on the HTTPS listener it creates: remove what overrides SslPolicy on "
                f"{listeners}"),
        )  # fmt: skip
    if clear:
        return (
            Status.WARN,
            f"{found}; {', '.join(clear)} forwards in clear text",
            _on(lb, f"make {', '.join(clear)} redirect to HTTPS",
                "creates the HTTP listener as a redirect to HTTPS"),
        )  # fmt: skip
    return Status.PASS, found, ""


@define_check("invalid-header-dropping", "The load balancer drops invalid header fields.", LB)
def _invalid_headers(ctx: Context) -> Outcome:
    lb = ctx.view.load_balancer
    if lb is None:
        return Status.WARN, "no load balancer read", ""
    obs = ctx.observed.get("drop_invalid_header_fields")
    where = f" ({obs.where})" if obs else ""
    if ctx.settings["drop_invalid_header_fields"]:
        return Status.PASS, f"drop_invalid_header_fields=true{where}", ""
    return (
        Status.WARN,
        f"drop_invalid_header_fields=false{where}",
        _on(lb, "set the attribute routing.http.drop_invalid_header_fields.enabled=true",
            "sets it from the setting drop_invalid_header_fields=true"),
    )  # fmt: skip


@define_check("access-logs", "Load balancer access logs go to S3.", LB)
def _access_logs(ctx: Context) -> Outcome:
    lb = ctx.view.load_balancer
    if lb is None:
        return Status.WARN, "no load balancer read", ""
    attrs = lb.attributes
    enabled = attrs.get("access_logs.s3.enabled", "false").lower() == "true"
    bucket = attrs.get("access_logs.s3.bucket", "")
    connection = attrs.get("connection_logs.s3.enabled", "false").lower() == "true"
    extra = f"; connection logs {'on' if connection else 'off'}"
    if enabled and bucket:
        prefix = attrs.get("access_logs.s3.prefix", "")
        return Status.PASS, f"s3://{bucket}/{prefix}{extra}", ""
    return (
        Status.WARN,
        f"access logs off{extra}",
        _on(lb, "set access_logs.s3.enabled=true and access_logs.s3.bucket=BUCKET "
                "(in CDK: its log_access_logs(bucket))",
            "turns them on for a load balancer it creates (log_bucket= picks the bucket)"),
    )  # fmt: skip


def _websocket_groups(ctx: Context) -> set[str]:
    return {g.id for g in ctx.view.target_groups}


@define_check(
    "weighted-forward-not-sticky",
    "No weighted forward to the WebSocket target groups has target-group stickiness (AWSALBTG beats the weights).",
    LB,
)
def _weighted_forward_sticky(ctx: Context) -> Outcome:
    lb, svc = ctx.view.load_balancer, ctx.view.service
    if lb is None:
        return Status.WARN, "no load balancer read", ""
    ours = _websocket_groups(ctx)
    shifted = {r for t in svc.shift_targets for r in (t.production_rule, t.test_rule) if r} if svc else set()
    weighted, sticky = 0, []
    for listener in lb.listeners:
        for rule in listener.rules:
            for action in rule.actions:
                if action.type != "forward" or not (action.weighted or rule.id in shifted):
                    continue
                if ours and not ours & set(action.target_groups):
                    continue
                weighted += 1
                if action.group_stickiness:
                    sticky.append(f"{listener.label} priority {rule.priority}")
    if sticky:
        return (
            Status.FAIL,
            f"target-group stickiness on the weighted forward of {', '.join(sticky)}: clients keep the AWSALBTG "
            "cookie's group whatever the weights, so they keep reaching blue and get 503 once it is gone",
            _on(lb, "set TargetGroupStickinessConfig Enabled=false on that forward (target stickiness, AWSALB, inside "
                    "each target group stays)",
                "writes the production rule's weighted forward without group stickiness"),
        )  # fmt: skip
    if not weighted:
        return Status.PASS, "no weighted forward to the WebSocket target groups", ""
    return Status.PASS, f"{weighted} forward(s) to the WebSocket target groups that ECS weighs, none group-sticky", ""


@define_check(
    "production-rule-forward-only",
    "A blue/green, linear or canary service's production and test rules only forward, and no other rule sends "
    "its traffic past them unshifted.",
    LB,
    SERVICE,
)
def _production_rule(ctx: Context) -> Outcome:
    lb, svc = ctx.view.load_balancer, ctx.view.service
    if lb is None or svc is None:
        return Status.WARN, "no load balancer or ECS service read", "audit the stack (--stack-name)"
    if not svc.shifts_traffic:
        return Status.PASS, f"deployment_strategy={svc.strategy_setting}: ECS shifts no listener rule", ""
    targets = [t for t in svc.shift_targets if t.production_rule]
    if not targets:
        return (
            Status.FAIL,
            f"deployment_strategy={svc.strategy_setting} but the service names no alternate target group and "
            "production listener rule",
            "register the service with an alternate target group and a production rule "
            "(StickyWebSocketLoadBalancer.attach does for a blue/green, linear or canary service)",
        )
    problems, found = [], []
    ours = _websocket_groups(ctx)
    for target in targets:
        shifted = {r for r in (target.production_rule, target.test_rule) if r}
        for rule_id in sorted(shifted):
            located = find_rule(lb, rule_id)
            if located is None:
                problems.append(f"rule {short_name(rule_id)} is not on this load balancer's listeners")
                continue
            listener, rule = located
            kinds = sorted({a.type for a in rule.actions} - {"forward"})
            role = "production" if rule_id == target.production_rule else "test"
            if kinds:
                problems.append(
                    f"the {role} rule ({listener.label} priority {rule.priority}) also has {', '.join(kinds)} "
                    "actions, which make ECS fail the deployment"
                )
            else:
                found.append(f"{role} rule {listener.label} priority {rule.priority}: forward only")
        located = find_rule(lb, target.production_rule or "")
        if located is not None:
            listener = located[0]
            groups = ours | {g for g in (target.target_group, target.alternate_target_group) if g}
            for rule in listener.rules:
                if rule.is_default or rule.id in shifted:
                    continue
                if any(a.type == "forward" and groups & set(a.target_groups) for a in rule.actions):
                    problems.append(
                        f"{listener.label} priority {rule.priority} forwards to the service's target group outside "
                        "the production rule: ECS never shifts it, so its requests keep reaching blue"
                    )
    if problems:
        return (
            Status.FAIL,
            "; ".join(problems),
            "give the production and test rules forward actions only, and route every request of the service "
            "through the production rule (StickyWebSocketLoadBalancer lays the rules out so)",
        )
    return Status.PASS, "; ".join(found), ""


@define_check(
    "production-weights-follow-tasks",
    "A blue/green, linear or canary service's production rule sends its traffic to the target group that holds the "
    "service's tasks (a stack update can write the coded weights back after ECS shifted production).",
    LB,
    SERVICE,
)
def _weights_follow_tasks(ctx: Context) -> Outcome:
    lb, svc = ctx.view.load_balancer, ctx.view.service
    if lb is None or svc is None:
        return Status.WARN, "no load balancer or ECS service read", "audit the stack (--stack-name)"
    if not svc.shifts_traffic:
        return Status.PASS, f"deployment_strategy={svc.strategy_setting}: one target group, no weights", ""
    groups = {g.id: g for g in ctx.view.target_groups}
    if not groups or any(g.registered_targets is None for g in groups.values()):
        return (
            Status.SKIP,
            "the targets of the service's target groups were not counted (a template, or no "
            "elasticloadbalancing:DescribeTargetHealth): read a live stack with stickyws audit --stack-name",
            "",
        )
    problems, fixes, empty, found = [], [], [], []
    for target in svc.shift_targets:
        located = find_rule(lb, target.production_rule or "")
        if located is None:
            continue  # production-rule-forward-only reports a production rule that is not on the listeners
        listener, rule = located
        for action in rule.actions:
            heavy = action.heaviest_target_group()
            if action.type != "forward" or heavy is None or heavy not in groups:
                continue
            weights = [w if w is not None else 1 for w in action.weights] or [1] * len(action.target_groups)
            total = sum(weights)
            share = dict(zip(action.target_groups, weights, strict=False))
            percent = round(100 * share.get(heavy, 0) / total) if total else 0
            served = groups[heavy]
            where = f"the production rule ({listener.label} priority {rule.priority})"
            holders = [
                groups[g] for g in action.target_groups if g != heavy and g in groups and groups[g].registered_targets
            ]
            if served.healthy_targets:
                found.append(
                    f"{where}: {percent}% to {short_name(heavy)}, {served.healthy_targets} healthy of "
                    f"{served.registered_targets} registered"
                )
            elif holders:
                holder = holders[0]
                problems.append(
                    f"{where} sends {percent}% of new requests to {short_name(heavy)}, which has no healthy target "
                    f"({served.registered_targets} registered), while {short_name(holder.id)} holds the service's "
                    f"{holder.registered_targets} target(s) ({holder.healthy_targets} healthy)"
                )
                fixes.append(
                    f"aws elbv2 modify-rule --rule-arn {rule.id} --actions 'Type=forward,ForwardConfig={{TargetGroups="
                    f"[{{TargetGroupArn={holder.id},Weight=100}},{{TargetGroupArn={heavy},Weight=0}}]}}'"
                )
            else:
                empty.append(f"{where}: {percent}% to {short_name(heavy)}, and no target group of it has a target")
    if problems:
        return (
            Status.FAIL,
            "; ".join(problems),
            "point the production rule back at the target group that holds the tasks, before the next deployment ("
            + "; ".join(fixes)
            + "). A stack update (cdk deploy) writes the rule's coded weights back after ECS shifted production to the "
            "other target group, and ECS does not check the weights before it shifts again: audit the live stack "
            "after every cdk deploy",
        )
    if empty:
        return (
            Status.WARN,
            "; ".join(empty),
            "check the service's running tasks and their registration (desired count, health checks)",
        )
    return Status.PASS, "; ".join(found) or "no weighted production forward read", ""
