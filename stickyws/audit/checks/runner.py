"""Run an audit: rebuild a deployment's settings, find its parts, then run the rules and the checks.

See :mod:`stickyws.audit.checks` for the steps of :func:`audit`; the checks it runs are those in
:data:`~stickyws.audit.checks.engine.CHECKS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from stickyws.audit.checks.engine import (
    CHECKS,
    Audit,
    CheckResult,
    Context,
    DeploymentCheck,
    Override,
    Status,
    status_of,
)
from stickyws.audit.mapping import Observation, observe
from stickyws.audit.view import DeploymentView
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


def audit(
    view: DeploymentView,
    assume: Mapping[str, str] | None = None,
    *,
    observed: Mapping[str, Observation] | None = None,
    parts: frozenset[Scope] | None = None,
    checks: Iterable[DeploymentCheck] | None = None,
) -> Audit:
    """Judge ``view``; ``assume`` gives settings that win over what the deployment shows.

    Another source than AWS (Kubernetes manifests) passes what it read itself: ``observed`` (default
    :func:`~stickyws.audit.mapping.observe` of ``view``), ``parts`` (default :func:`parts_of`) and the
    deployment ``checks`` to run (default :data:`CHECKS`).
    Raises :class:`stickyws.settings.UnknownSettingError` for an unknown name in ``assume``.
    """
    assume = dict(assume or {})
    Settings().with_overrides(assume)  # an unknown name or a bad value raises here, before anything is read
    problems: list[str] = []
    unread: set[str] = set()
    app_settings, read = _read_server(view, assume, problems)
    observed = observe(view) if observed is None else observed
    infra_settings = _apply(app_settings, {n: o.text for n, o in observed.items()}, problems, unread, "deployment")
    settings = infra_settings.with_overrides(assume)
    overrides = tuple(_overrides(assume, infra_settings, read, observed))
    settings = _told_assumed(settings, assume)

    parts = parts_of(view, assume) if parts is None else parts
    plan = settings.plan(parts)
    from_container = frozenset(read) - unread
    ctx = Context(view, settings, app_settings, from_container, observed, infra_settings)
    container = view.task_definition.container if view.task_definition else None
    # The server mode and what it is told are read from the labels (or follow from their absence).
    from_labels = {"server_mode", "server_env"} if container is not None else set()
    known = (set(observed) | set(read) | set(assume) | from_labels) - unread
    results = list(_rule_results(settings, plan, parts, known))
    for check in CHECKS.values() if checks is None else checks:
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
    left_out = {r.id for r in plan.left_out}  # rules of a part this deployment cannot have
    for rule in RULES.values():
        if rule.id in left_out:
            continue
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
