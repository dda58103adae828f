"""Judge a :class:`~stickyws.audit.view.DeploymentView`: the model's rules plus deployment facts.

:func:`audit` does four things, in order:

1. Rebuild the settings. The server's settings come from the container, read the way the
   server reads them (:func:`stickyws.settings.read_server_environment`): its Docker labels say
   whose server it is (``stickyws.server-mode``) and which variables carry which settings
   (``stickyws.server-env``); the reference server reads every ``STICKYWS_*`` variable, your own
   server only the variables it is told. The infrastructure's settings come from the load balancer,
   target group, service and task definition (:func:`stickyws.audit.mapping.observe`) and win over
   the container, because they are what AWS actually does. ``assume`` (``--assume``) wins over
   everything read, and each value it replaced is reported (:class:`Override`).
2. Find the parts the deployment has (:func:`parts_of`): a load balancer, an ECS service, a server
   container, a registry.
3. Run the settings model's rules for those parts (``Settings.plan(parts)`` and
   ``Settings.validate(parts)``): one row per rule in :data:`stickyws.settings.RULES`; a rule the
   plan skips is a ``skip`` row carrying the plan's reason. The auditor holds no copy of any rule.
4. Run the deployment checks in :data:`CHECKS` (facts that are not settings: the Upgrade listener
   rule, TLS policy, access logs, circuit breaker, task ingress, the registry's encryption, and
   whether the server's settings agree with the infrastructure's); a check whose scopes are not all
   present is skipped the same way.

A rule that fails only because of a setting the auditor could not observe (a reference server whose
container does not show it, say) is reported as ``warn`` and names the assumption.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from stickyws.audit.mapping import INFRA_SETTINGS, Observation, observe
from stickyws.audit.view import ORIGIN_CREATED, ORIGIN_SUPPLIED, DeploymentView, LoadBalancer, find_rule
from stickyws.rulebook import Rulebook
from stickyws.settings import (
    FIELDS,
    LABEL_SERVER_ENV,
    LABEL_SERVER_MODE,
    RULES,
    Scope,
    Settings,
    SettingsError,
    Severity,
    env_name,
    read_server_environment,
    render_value,
)
from stickyws.settings.rules import RulePlan, settings_read_by
from stickyws.settings.scopes import ALWAYS_KNOWN, SERVER_SIDE_GROUPS


class Status(enum.Enum):
    """Outcome of one check; ``fail`` makes ``stickyws audit`` exit 1; ``skip``: not for this deployment."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


#: The one translation of a settings finding's :class:`~stickyws.settings.Severity` into an audit
#: row's :class:`Status`: an error fails, a warning warns, information passes.
STATUS_OF_SEVERITY: Mapping[Severity, Status] = {
    Severity.ERROR: Status.FAIL,
    Severity.WARNING: Status.WARN,
    Severity.INFO: Status.PASS,
}
_WORST_FIRST = (Status.FAIL, Status.WARN, Status.PASS)


def status_of(severities: Iterable[Severity]) -> Status:
    """The status of a rule that reported findings of ``severities``: the worst one's (``pass`` for none)."""
    found = {STATUS_OF_SEVERITY[s] for s in severities}
    return next((status for status in _WORST_FIRST if status in found), Status.PASS)


@dataclass(frozen=True)
class CheckResult:
    """One row of the audit: which rule, how it went, what was found and how to fix it.

    ``kind`` is ``setting`` for a rule of the settings model and ``deployment`` for a check of
    this module; ``scopes`` are the parts of a deployment it speaks of. A ``skip`` row's ``found``
    is the reason it was skipped.
    """

    rule: str
    status: Status
    found: str
    expected: str
    fix: str
    kind: str
    scopes: frozenset[Scope] = frozenset()


@dataclass(frozen=True)
class Override:
    """A value ``--assume`` put in place of one read from the deployment."""

    name: str
    value: str
    replaced: str
    where: str

    def describe(self) -> str:
        """``--assume NAME=VALUE overrides OLD from WHERE``."""
        return f"--assume {self.name}={self.value} overrides {self.replaced} from {self.where}"


@dataclass(frozen=True)
class Audit:
    """The audit of one view: its results, the settings they were judged on and where each came from.

    ``parts`` are the parts the deployment was found to have; ``server_read`` the settings read from
    the server container (``{name: text}``); ``server_told`` what your own server is told, as
    ``{name: variable}`` (empty for the reference server); ``overrides`` what ``--assume`` replaced.
    """

    source: str
    results: tuple[CheckResult, ...]
    settings: Settings
    observed: Mapping[str, Observation]
    notes: tuple[str, ...]
    parts: frozenset[Scope] = frozenset()
    server_read: Mapping[str, str] = field(default_factory=dict)
    server_told: Mapping[str, str] = field(default_factory=dict)
    overrides: tuple[Override, ...] = ()

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

    def skipped(self) -> list[str]:
        """Ids of the rules and checks skipped for parts the deployment does not have, in report order."""
        return [r.rule for r in self.results if r.status is Status.SKIP]


@dataclass(frozen=True)
class Context:
    """What a deployment check may look at.

    ``infra_settings`` are the container's settings with the observed infrastructure applied (no
    ``--assume``), ``app_settings`` the container's alone; ``from_container`` names the settings read
    from the container.
    """

    view: DeploymentView
    settings: Settings
    app_settings: Settings
    from_container: frozenset[str]
    observed: Mapping[str, Observation]
    infra_settings: Settings


Outcome = tuple[Status, str, str]  # (status, found, fix)
CheckFn = Callable[[Context], Outcome]


@dataclass(frozen=True)
class DeploymentCheck:
    """A named check of a deployment fact that the settings model does not hold, and the parts it speaks of."""

    id: str
    summary: str
    run: CheckFn
    scopes: frozenset[Scope]


#: Every deployment check by id, in registration order; no id is also a rule's (one report row per id).
CHECKS: Rulebook[DeploymentCheck] = Rulebook("check", shares_ids_with=[RULES])


def deployment_check(check_id: str, summary: str, *scopes: Scope) -> Callable[[CheckFn], CheckFn]:
    """Register ``fn`` as the deployment check ``check_id``, run only where every one of ``scopes`` is present."""

    def make(fn: CheckFn) -> DeploymentCheck:
        return DeploymentCheck(check_id, summary, fn, frozenset(scopes))

    return CHECKS.decorator(make)


def catalog() -> list[tuple[str, str, str]]:
    """``(id, kind, summary)`` of every rule and check the audit runs, in report order."""
    rows = [(r.id, "setting", r.summary) for r in RULES.values()]
    return rows + [(c.id, "deployment", c.summary) for c in CHECKS.values()]


def scopes_of(rule_id: str) -> frozenset[Scope]:
    """The scopes of the rule or deployment check ``rule_id`` (KeyError if there is none)."""
    return RULES[rule_id].scopes if rule_id in RULES else CHECKS[rule_id].scopes


# --- the parts of a deployment --------------------------------------------------------------

#: Why a check of each part does not apply, as the report says it.
ABSENT_PARTS: Mapping[Scope, str] = {
    Scope.LOAD_BALANCER: "no load balancer",
    Scope.SERVICE: "no ECS service (none registered with the target group was read)",
    Scope.SERVER: "no server container (no task definition read)",
    Scope.REGISTRY: "no registry (no ElastiCache cache in the stack or named with --registry-id, "
    "no REDIS_URL in the container)",
}


def parts_of(view: DeploymentView, assume: Iterable[str] = ()) -> frozenset[Scope]:
    """The parts ``view`` shows (see :data:`stickyws.settings.PARTS`).

    A load balancer when one was read; an ECS service when a service or its task definition was; a
    server when the task definition has a container, or when ``assume`` names a server-side setting
    (the caller vouches for a server the auditor cannot see); a registry when the source has an
    ElastiCache cache or names one, or the container is given ``REDIS_URL``.
    """
    container = view.task_definition.container if view.task_definition else None
    found = set()
    if view.load_balancer is not None:
        found.add(Scope.LOAD_BALANCER)
    if view.service is not None or view.task_definition is not None:
        found.add(Scope.SERVICE)
    if container is not None or any(_server_side(name) for name in assume):
        found.add(Scope.SERVER)
    if view.registry is not None or view.registry_declared or (container is not None and container.registry_url):
        found.add(Scope.REGISTRY)
    return frozenset(found)


def _server_side(name: str) -> bool:
    return name in FIELDS and FIELDS[name].group in SERVER_SIDE_GROUPS and name not in ALWAYS_KNOWN


def _absent_reason(missing: frozenset[Scope]) -> str:
    absent = [ABSENT_PARTS[s] for s in sorted(missing, key=lambda s: s.value) if s in ABSENT_PARTS]
    if Scope.REFERENCE_SERVER in missing or Scope.CLIENT in missing:
        absent.append("no reference server")
    return "the deployment has " + " and ".join(absent)


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


def _read_server(
    view: DeploymentView, assume: Mapping[str, str], problems: list[str]
) -> tuple[Settings, dict[str, str]]:
    """The settings the server container is told and ``{name: text}`` of what was read from it.

    Read with :func:`stickyws.settings.read_server_environment` from the container's environment and
    labels; ``--assume server_mode`` and ``server_env`` replace the labels. A variable whose value
    does not parse is left out and described in ``problems``.
    """
    container = view.task_definition.container if view.task_definition else None
    env = dict(container.environment) if container else {}
    labels = dict(container.labels) if container else {}
    for name, label in (("server_mode", LABEL_SERVER_MODE), ("server_env", LABEL_SERVER_ENV)):
        if name in assume:
            labels[label] = assume[name]
    told = Settings().with_overrides({"server_mode": "own", "server_env": labels.get(LABEL_SERVER_ENV, "")}).told_env()
    while True:
        try:
            return read_server_environment(env, labels)
        except SettingsError as exc:
            problems.extend(f"container environment: {f.message}" for f in exc.findings)
            names = {name for f in exc.findings for name in f.settings}
            bad = {v for name in names for v in (env_name(name), told.get(name)) if v in env}
            if not bad:
                return read_server_environment({}, labels)
            for variable in bad:
                del env[variable]


def variable_of(settings: Settings, name: str) -> str:
    """The container variable setting ``name`` is read from: the one ``server_env`` names, else ``STICKYWS_*``."""
    return settings.told_env().get(name) or env_name(name)


def audit(view: DeploymentView, assume: Mapping[str, str] | None = None) -> Audit:
    """Judge ``view``; ``assume`` gives settings that win over what the deployment shows.

    Raises :class:`stickyws.settings.UnknownSettingError` for an unknown name in ``assume``.
    """
    assume = dict(assume or {})
    Settings().with_overrides(assume)  # an unknown name or a bad value raises here, before anything is read
    problems: list[str] = []
    unread: set[str] = set()
    app_settings, read = _read_server(view, assume, problems)
    observed = observe(view)
    infra_settings = _apply(app_settings, {n: o.text for n, o in observed.items()}, problems, unread, "deployment")
    settings = infra_settings.with_overrides(assume)
    overrides = tuple(_overrides(assume, infra_settings, read, observed))
    settings = _told_assumed(settings, assume)

    parts = parts_of(view, assume)
    plan = settings.plan(parts)
    from_container = frozenset(read) - unread
    ctx = Context(view, settings, app_settings, from_container, observed, infra_settings)
    container = view.task_definition.container if view.task_definition else None
    # The server mode and what it is told are read from the labels (or follow from their absence).
    from_labels = {"server_mode", "server_env"} if container is not None else set()
    known = (set(observed) | set(read) | set(assume) | from_labels) - unread
    results = list(_rule_results(settings, plan, parts, known))
    for check in CHECKS.values():
        missing = check.scopes - plan.scopes
        if missing:
            results.append(_skipped(check.id, check.summary, _absent_reason(missing), check.scopes, "deployment"))
            continue
        status, found, fix = check.run(ctx)
        results.append(CheckResult(check.id, status, found, check.summary, fix, "deployment", check.scopes))
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
    told = app_settings.told_env()
    return Audit(view.source, tuple(results), settings, observed, view.notes, parts, read, told, overrides)


def _overrides(
    assume: Mapping[str, str],
    read_settings: Settings,
    read: Mapping[str, str],
    observed: Mapping[str, Observation],
) -> Iterator[Override]:
    """Each ``assume`` value that differs from the value read (from the infrastructure, else the container)."""
    assumed = read_settings.with_overrides(assume)
    for name in assume:
        if assumed[name] == read_settings[name]:
            continue
        if name in observed:
            where = observed[name].where
        elif name in read:
            where = f"container variable {variable_of(read_settings, name)}"
        else:
            continue
        yield Override(name, render_value(assumed[name]), render_value(read_settings[name]), where)


def _told_assumed(settings: Settings, assume: Mapping[str, str]) -> Settings:
    """For your own server, an assumed server-side setting counts as told: the caller vouches for it.

    It is added to ``server_env`` under its ``STICKYWS_*`` name (after the environment was read, so
    no variable is read for it).
    """
    if not settings.own_server:
        return settings
    told = settings.told_env()
    extra = [name for name in assume if _server_side(name) and name not in told]
    if not extra:
        return settings
    return settings.with_overrides({"server_env": ",".join([*settings.server.server_env, *extra])})


def _skipped(rule_id: str, summary: str, reason: str, scopes: frozenset[Scope], kind: str) -> CheckResult:
    """The row of a rule or check that does not apply: its ``found`` is the reason."""
    return CheckResult(rule_id, Status.SKIP, reason, summary, "", kind, scopes)


# --- the settings model's rules -------------------------------------------------------------


def _rule_results(
    settings: Settings, plan: RulePlan, parts: frozenset[Scope], known: set[str]
) -> Iterator[CheckResult]:
    findings = settings.validate(parts)
    skipped = {s.rule.id: s.reason for s in plan.skipped}
    for rule in RULES.values():
        if rule.id in skipped:
            yield _skipped(rule.id, rule.summary, skipped[rule.id], rule.scopes, "setting")
            continue
        mine = [f for f in findings if f.rule == rule.id]
        errors = [f for f in mine if f.severity is Severity.ERROR]
        warnings = [f for f in mine if f.severity is Severity.WARNING]
        infos = [f for f in mine if f.severity is Severity.INFO]
        read = [n for n in settings_read_by(rule.id, settings) if n in plan.known]
        unknown = [n for n in read if n not in known] if rule.id != "in-range" else []
        status = status_of(f.severity for f in mine)
        if status is Status.FAIL and all(any(n not in known for n in f.settings) for f in errors):
            status = Status.WARN  # fails only on values the auditor could not see
        shown = errors + warnings
        if shown:
            found = "; ".join(f.message for f in shown)
        elif infos:
            found = "; ".join(f.message for f in infos)
        elif rule.id == "in-range":
            found = f"all {len(plan.known)} settings of this deployment in range"
        else:
            found = ", ".join(f"{n}={render_value(settings[n])}" for n in read)
        if unknown:
            found += " (assumed, not observed: " + ", ".join(f"{n}={render_value(settings[n])}" for n in unknown)
            found += "; pass --assume NAME=VALUE)"
        fix = "; ".join(dict.fromkeys(f.fix for f in shown if f.fix))
        yield CheckResult(rule.id, status, found, rule.summary, fix, "setting", rule.scopes)


# --- deployment checks ----------------------------------------------------------------------

LB, SERVICE, SERVER, REGISTRY = Scope.LOAD_BALANCER, Scope.SERVICE, Scope.SERVER, Scope.REGISTRY


def short_name(identifier: str) -> str:
    """The readable name in an ARN (``targetgroup/NAME/id`` -> NAME, ``service/CLUSTER/NAME`` -> NAME)."""
    if not identifier.startswith("arn:"):
        return identifier
    parts = identifier.split(":", 5)[-1].split("/")
    if parts[0] == "targetgroup" and len(parts) > 1:
        return parts[1]
    if parts[0] == "loadbalancer" and len(parts) > 2:
        return parts[2]
    return parts[-1]


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


@deployment_check(
    "upgrade-rule", "Every listener that forwards has an `Upgrade: websocket` rule to the target group.", LB
)
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


@deployment_check("tls-policy", "HTTPS listeners use a TLS 1.3 security policy; plain HTTP only redirects.", LB)
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


@deployment_check("invalid-header-dropping", "The load balancer drops invalid header fields.", LB)
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


@deployment_check("access-logs", "Load balancer access logs go to S3.", LB)
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


@deployment_check(
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


@deployment_check(
    "deployment-circuit-breaker", "The ECS service rolls back failed deployments (circuit breaker).", SERVICE
)
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


@deployment_check("task-ingress-from-alb-only", "The tasks' security groups admit only the load balancer.", LB, SERVICE)
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


@deployment_check(
    "registry-encryption-and-auth",
    "The connection registry requires TLS, encrypts at rest and authenticates its clients (RBAC).",
    REGISTRY,
)
def _registry(ctx: Context) -> Outcome:
    reg = ctx.view.registry
    if reg is None:
        return (
            Status.WARN,
            "no registry read (an existing endpoint, or a live audit without the stack)",
            "audit the stack (--stack-name) or name the cache (--registry-id), or check the registry's TLS and "
            "authentication by hand",
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
    construct = " (ConnectionRegistry does)"
    if not reg.transit_encryption or reg.transit_encryption_mode == "preferred":
        return Status.FAIL, found, f"set TransitEncryptionEnabled=true with TransitEncryptionMode=required{construct}"
    if not reg.at_rest_encryption:
        return (
            Status.FAIL,
            found,
            f"create the cache with AtRestEncryptionEnabled=true (it cannot be changed later){construct}",
        )
    if reg.mode != "serverless" and not (reg.multi_az and reg.automatic_failover):
        return (
            Status.FAIL,
            found + "; Multi-AZ automatic failover off",
            f"enable MultiAZ and AutomaticFailover (registry_replicas_per_shard >= 1){construct}",
        )
    if reg.auth is None:
        return Status.WARN, found, "check the user group's users by hand (iam or password authentication)"
    if reg.auth == "none":
        return Status.FAIL, found, "set registry_auth=iam (an RBAC user group with an IAM user; ConnectionRegistry)"
    return Status.PASS, found, ""


@deployment_check(
    "app-settings-match", "The settings the container runs with equal what the infrastructure does.", SERVER
)
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


# --- blue/green, linear and canary --------------------------------------------------------------

#: The lifecycle stage at which a hook can move blue's clients: production has shifted, blue still runs.
MOVE_CONNECTIONS_STAGE = "POST_PRODUCTION_TRAFFIC_SHIFT"


def _websocket_groups(ctx: Context) -> set[str]:
    return {g.id for g in ctx.view.target_groups}


@deployment_check(
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


@deployment_check(
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


@deployment_check(
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


@deployment_check(
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
