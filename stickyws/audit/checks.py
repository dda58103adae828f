"""Judge a :class:`~stickyws.audit.view.DeploymentView`: the model's rules plus deployment facts.

:func:`audit` does three things, in order:

1. Rebuild the settings. The application's settings come from the container's
   ``STICKYWS_*`` environment (:func:`stickyws.settings.from_env`, over ``assume``, over the
   model defaults); the infrastructure's settings come from the load balancer, target group,
   service and task definition (:func:`stickyws.audit.mapping.observe`) and win where both
   exist, because they are what AWS actually does.
2. Run the settings model's own rules on that object (``Settings.validate()``): one result row
   per rule in :data:`stickyws.settings.RULES`. The auditor holds no copy of any rule.
3. Run the deployment checks in :data:`CHECKS`: facts that are not settings (the Upgrade
   listener rule, TLS policy, access logs, circuit breaker, task ingress) and whether the
   application's settings agree with the infrastructure's.

A rule that fails only because of a setting the auditor could not observe (a load balancer
with no stickyws container behind it, say) is reported as ``warn`` and names the assumption.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from stickyws.audit.mapping import INFRA_SETTINGS, Observation, observe
from stickyws.audit.view import DeploymentView
from stickyws.settings import FIELDS, RULES, Settings, SettingsError, Severity, env_name, render_value


class Status(enum.Enum):
    """Outcome of one check; ``fail`` makes ``stickyws audit`` exit 1."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class CheckResult:
    """One row of the audit: which rule, how it went, what was found and how to fix it.

    ``kind`` is ``setting`` for a rule of the settings model and ``deployment`` for a check of
    this module.
    """

    rule: str
    status: Status
    found: str
    expected: str
    fix: str
    kind: str


@dataclass(frozen=True)
class Audit:
    """The audit of one view: its results, the settings they were judged on and where each came from."""

    source: str
    results: tuple[CheckResult, ...]
    settings: Settings
    observed: Mapping[str, Observation]
    notes: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        """0 when nothing failed (warnings allowed), 1 when a check failed."""
        return 1 if any(r.status is Status.FAIL for r in self.results) else 0

    def result(self, rule: str) -> CheckResult:
        """The result row of ``rule`` (KeyError if there is none)."""
        for r in self.results:
            if r.rule == rule:
                return r
        raise KeyError(rule)

    def failed(self) -> list[str]:
        """Ids of the rules that failed, in report order."""
        return [r.rule for r in self.results if r.status is Status.FAIL]


@dataclass(frozen=True)
class Context:
    """What a deployment check may look at."""

    view: DeploymentView
    settings: Settings
    app_settings: Settings
    from_container: frozenset[str]
    observed: Mapping[str, Observation]


Outcome = tuple[Status, str, str]  # (status, found, fix)
CheckFn = Callable[[Context], Outcome]


@dataclass(frozen=True)
class DeploymentCheck:
    """A named check of a deployment fact that the settings model does not hold."""

    id: str
    summary: str
    run: CheckFn


CHECKS: dict[str, DeploymentCheck] = {}


def deployment_check(check_id: str, summary: str) -> Callable[[CheckFn], CheckFn]:
    """Register ``fn`` as the deployment check ``check_id``."""

    def register(fn: CheckFn) -> CheckFn:
        if check_id in CHECKS or check_id in RULES:
            raise ValueError(f"check {check_id!r} registered twice")
        CHECKS[check_id] = DeploymentCheck(check_id, summary, fn)
        return fn

    return register


def catalog() -> list[tuple[str, str, str]]:
    """``(id, kind, summary)`` of every rule and check the audit runs, in report order."""
    rows = [(r.id, "setting", r.summary) for r in RULES.values()]
    return rows + [(c.id, "deployment", c.summary) for c in CHECKS.values()]


# --- building the settings -------------------------------------------------------------------


def _apply(base: Settings, values: Mapping[str, str], problems: list[str], unread: set[str], origin: str) -> Settings:
    """``base`` with each parsable value applied; unparsable ones go to ``problems`` and ``unread``."""
    settings = base
    for name, text in values.items():
        try:
            settings = settings.with_overrides({name: text})
        except SettingsError as exc:
            problems.extend(f"{origin}: {f.message}" for f in exc.findings)
            unread.add(name)
    return settings


def audit(view: DeploymentView, assume: Mapping[str, str] | None = None) -> Audit:
    """Judge ``view``; ``assume`` gives application settings to use where the container shows none.

    Raises :class:`stickyws.settings.UnknownSettingError` for an unknown name in ``assume``.
    """
    problems: list[str] = []
    assumed = Settings().with_overrides(dict(assume or {}))
    container = view.task_definition.container if view.task_definition else None
    env = dict(container.environment) if container else {}
    from_container = {name: env[env_name(name)] for name in FIELDS if env_name(name) in env}
    unread: set[str] = set()
    app_settings = _apply(assumed, from_container, problems, unread, "container environment")
    observed = observe(view)
    settings = _apply(app_settings, {n: o.text for n, o in observed.items()}, problems, unread, "deployment")

    ctx = Context(view, settings, app_settings, frozenset(from_container), observed)
    known = (set(observed) | set(from_container) | set(assume or {})) - unread
    results = list(_rule_results(settings, known))
    for check in CHECKS.values():
        status, found, fix = check.run(ctx)
        results.append(CheckResult(check.id, status, found, check.summary, fix, "deployment"))
    if problems:
        results.append(
            CheckResult(
                "readable-values",
                Status.FAIL,
                "; ".join(problems),
                "every value read parses as its setting's type",
                "correct the values named (they are ignored above, so the rules saw defaults)",
                "deployment",
            )
        )
    return Audit(view.source, tuple(results), settings, observed, view.notes)


# --- the settings model's rules -------------------------------------------------------------


def _rule_results(settings: Settings, known: set[str]) -> Iterator[CheckResult]:
    findings = settings.validate()
    for rule in RULES.values():
        mine = [f for f in findings if f.rule == rule.id]
        errors = [f for f in mine if f.severity is Severity.ERROR]
        warnings = [f for f in mine if f.severity is Severity.WARNING]
        infos = [f for f in mine if f.severity is Severity.INFO]
        read = settings_read_by(rule.id, settings)
        unknown = [n for n in read if n not in known] if rule.id != "in-range" else []
        if errors:
            status = Status.FAIL
            if all(any(n not in known for n in f.settings) for f in errors):
                status = Status.WARN  # fails only on values the auditor could not see
        elif warnings:
            status = Status.WARN
        else:
            status = Status.PASS
        shown = errors + warnings
        if shown:
            found = "; ".join(f.message for f in shown)
        elif infos:
            found = "; ".join(f.message for f in infos)
        elif rule.id == "in-range":
            found = f"all {len(FIELDS)} settings in range"
        else:
            found = ", ".join(f"{n}={render_value(settings[n])}" for n in read)
        if unknown:
            found += " (assumed, not observed: " + ", ".join(f"{n}={render_value(settings[n])}" for n in unknown)
            found += "; pass --assume NAME=VALUE)"
        fix = "; ".join(dict.fromkeys(f.fix for f in shown if f.fix))
        yield CheckResult(rule.id, status, found, rule.summary, fix, "setting")


def settings_read_by(rule_id: str, settings: Settings) -> tuple[str, ...]:
    """Flat names of the settings that rule ``rule_id`` reads when judging ``settings``.

    Found by running the (pure) rule on a recording proxy, so the report can show the values a
    passing rule looked at without a second list of what each rule reads.
    """
    seen: list[str] = []
    list(RULES[rule_id].check(cast(Settings, _SettingsRecorder(settings, seen))))
    return tuple(dict.fromkeys(seen))


class _SettingsRecorder:
    fields_index = FIELDS  # what Settings.fields_index is: rules read specs through it

    def __init__(self, settings: Settings, seen: list[str]) -> None:
        self._settings = settings
        self._seen = seen

    def __getattr__(self, group: str) -> Any:
        return _GroupRecorder(getattr(self._settings, group), self._seen)

    def __getitem__(self, name: str) -> Any:
        self._seen.append(name)
        return self._settings[name]

    def items(self) -> Iterator[tuple[str, Any]]:
        for name, value in self._settings.items():
            self._seen.append(name)
            yield name, value


class _GroupRecorder:
    def __init__(self, group: object, seen: list[str]) -> None:
        self._group = group
        self._seen = seen

    def __getattr__(self, name: str) -> Any:
        if name in FIELDS:
            self._seen.append(name)
        return getattr(self._group, name)


# --- deployment checks ----------------------------------------------------------------------


def short_name(identifier: str) -> str:
    """The readable name in an ARN (``targetgroup/NAME/id`` -> NAME, ``service/CLUSTER/NAME`` -> NAME)."""
    if not identifier.startswith("arn:"):
        return identifier
    parts = identifier.split(":", 5)[-1].split("/")
    return parts[1] if parts[0] == "targetgroup" and len(parts) > 1 else parts[-1]


_TLS_POLICY_HINT = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@deployment_check("upgrade-rule", "Every listener that forwards has an `Upgrade: websocket` rule to the target group.")
def _upgrade_rule(ctx: Context) -> Outcome:
    lb, tg = ctx.view.load_balancer, ctx.view.target_group
    if lb is None:
        return Status.FAIL, "no load balancer read", "audit the stack or ARN of the WebSocket load balancer"
    serving = [listener for listener in lb.listeners if listener.forwards]
    if not serving:
        return Status.FAIL, "no listener forwards traffic", "add an HTTPS (or HTTP) listener that forwards"
    found, missing = [], []
    for listener in serving:
        rules = [r for r in listener.rules if not r.is_default and r.matches_websocket_upgrade]
        hit = next(
            (r for r in rules if tg is None or any(tg.id in a.target_groups for a in r.actions if a.type == "forward")),
            None,
        )
        if hit is None:
            missing.append(listener.label)
            found.append(f"{listener.label}: none")
        else:
            found.append(f"{listener.label}: priority {hit.priority}")
    if missing:
        return (
            Status.FAIL,
            "; ".join(found),
            f"add a rule on {', '.join(missing)} matching http-header Upgrade=websocket that forwards to the "
            "target group (StickyWebSocketLoadBalancer does, upgrade_rule_priority=1)",
        )
    return Status.PASS, "; ".join(found), ""


@deployment_check("tls-policy", "HTTPS listeners use a TLS 1.3 security policy; plain HTTP only redirects.")
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
            f"add an HTTPS listener with a certificate and {_TLS_POLICY_HINT} (certificate_arn or domain_name)",
        )
    weak = [(listener.label, listener.ssl_policy) for listener in https if "TLS13" not in (listener.ssl_policy or "")]
    found = ", ".join(f"{listener.label} {listener.ssl_policy or 'AWS default policy'}" for listener in https)
    if weak:
        return Status.FAIL, found, f"set SslPolicy {_TLS_POLICY_HINT} on {', '.join(label for label, _ in weak)}"
    if clear:
        return Status.WARN, f"{found}; {', '.join(clear)} forwards in clear text", "make the HTTP listener redirect"
    return Status.PASS, found, ""


@deployment_check("invalid-header-dropping", "The load balancer drops invalid header fields.")
def _invalid_headers(ctx: Context) -> Outcome:
    if ctx.view.load_balancer is None:
        return Status.WARN, "no load balancer read", ""
    obs = ctx.observed.get("drop_invalid_header_fields")
    where = f" ({obs.where})" if obs else ""
    if ctx.settings["drop_invalid_header_fields"]:
        return Status.PASS, f"drop_invalid_header_fields=true{where}", ""
    return (
        Status.WARN,
        f"drop_invalid_header_fields=false{where}",
        "set drop_invalid_header_fields=true (routing.http.drop_invalid_header_fields.enabled)",
    )


@deployment_check("access-logs", "Load balancer access logs go to S3.")
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
        "set access_logs.s3.enabled=true with access_logs.s3.bucket (StickyWebSocketLoadBalancer creates the bucket)",
    )


@deployment_check("service-behind-target-group", "The ECS service is registered with the WebSocket target group.")
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


@deployment_check("deployment-circuit-breaker", "The ECS service rolls back failed deployments (circuit breaker).")
def _circuit_breaker(ctx: Context) -> Outcome:
    svc = ctx.view.service
    if svc is None:
        return Status.WARN, "no ECS service read", "audit with --stack-name, or check the service by hand"
    fix = "enable the deployment circuit breaker with rollback on the ECS service"
    if svc.circuit_breaker_enabled and svc.circuit_breaker_rollback:
        return Status.PASS, "enabled, rollback on", ""
    if svc.circuit_breaker_enabled:
        return Status.WARN, "enabled, rollback off", fix
    return Status.FAIL, "not enabled" if svc.circuit_breaker_enabled is False else "not set", fix


@deployment_check("task-ingress-from-alb-only", "The tasks' security groups admit only the load balancer.")
def _task_ingress(ctx: Context) -> Outcome:
    svc, lb = ctx.view.service, ctx.view.load_balancer
    if svc is None:
        return Status.WARN, "no ECS service read", "audit with --stack-name, or check the service by hand"
    if lb is None:
        return Status.WARN, "no load balancer read", ""
    if not svc.security_groups:
        return (
            Status.FAIL,
            "the service has no security groups (awsvpc network configuration not read)",
            "give the service a security group that admits only the load balancer's",
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
        return Status.FAIL, "no ingress at all: the load balancer cannot reach the tasks", "admit the ALB's group"
    return Status.PASS, "; ".join(parts), ""


@deployment_check(
    "registry-encryption-and-auth",
    "The connection registry requires TLS, encrypts at rest and authenticates its clients (RBAC).",
)
def _registry(ctx: Context) -> Outcome:
    reg = ctx.view.registry
    if reg is None:
        return (
            Status.WARN,
            "no registry read (an existing endpoint, or a live audit without the stack)",
            "audit the stack (--stack-name) or check the registry's TLS and authentication by hand",
        )
    shape = f"{reg.mode} {short_name(reg.id)}"
    if reg.mode == "cluster":
        shape += f" ({reg.shards} shards x {reg.replicas_per_shard} replicas)"
    elif reg.mode == "single":
        shape += f" ({reg.replicas_per_shard} replicas)"
    tls = "TLS " + (reg.transit_encryption_mode or "on") if reg.transit_encryption else "no TLS"
    at_rest = "encrypted at rest" if reg.at_rest_encryption else "not encrypted at rest"
    groups = f" (user group {', '.join(reg.user_groups)})" if reg.user_groups else ""
    found = f"{shape}: {tls}, {at_rest}, auth {reg.auth or 'not readable'}{groups}"
    if not reg.transit_encryption or reg.transit_encryption_mode == "preferred":
        return Status.FAIL, found, "set TransitEncryptionEnabled=true with TransitEncryptionMode=required"
    if not reg.at_rest_encryption:
        return Status.FAIL, found, "create the cache with AtRestEncryptionEnabled=true (it cannot be changed later)"
    if reg.mode != "serverless" and not (reg.multi_az and reg.automatic_failover):
        return Status.FAIL, found + "; Multi-AZ automatic failover off", "enable MultiAZ and AutomaticFailover"
    if reg.auth is None:
        return Status.WARN, found, "check the user group's users by hand (iam or password authentication)"
    if reg.auth == "none":
        return Status.FAIL, found, "set registry_auth=iam (an RBAC user group with an IAM user)"
    return Status.PASS, found, ""


@deployment_check("app-settings-match", "The settings the container runs with equal what the infrastructure does.")
def _app_matches(ctx: Context) -> Outcome:
    if not ctx.from_container:
        return (
            Status.WARN,
            "the container environment carries no STICKYWS_* settings: application settings are assumed",
            "render the environment with stickyws.settings.to_env, or pass --assume NAME=VALUE",
        )
    mismatched = []
    compared = sorted((set(ctx.observed) & ctx.from_container) & INFRA_SETTINGS)
    for name in compared:
        infra, app = ctx.settings[name], ctx.app_settings[name]
        if infra != app:
            mismatched.append(
                f"{name}: deployment {render_value(infra)} ({ctx.observed[name].where}), "
                f"container {env_name(name)}={render_value(app)}"
            )
    if mismatched:
        return (
            Status.FAIL,
            "; ".join(mismatched),
            "deploy infrastructure and container from one Settings object (the stack renders both)",
        )
    return Status.PASS, f"{len(compared)} settings agree, {len(ctx.from_container)} read from the container", ""
