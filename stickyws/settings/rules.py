"""Named cross-setting rules: the one place where settings are judged.

Each rule is a small pure function of :class:`Settings` that yields :class:`Finding` objects, and
carries the :class:`~stickyws.settings.scopes.Scope` values it speaks of. The CDK constructs run
the rules of the parts they build before synthesis (errors stop the synth), the server runs them at
start-up, and the auditor runs the very same rules on settings read back from a live load balancer
or a template, for the parts that deployment has. Add a rule with the :func:`rule` decorator; its
id is its public name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from stickyws.rulebook import Rulebook
from stickyws.settings.findings import Finding, Severity
from stickyws.settings.scopes import (
    ALWAYS_KNOWN,
    GROUP_SCOPES,
    PARTS,
    SERVER_SIDE_GROUPS,
    Scope,
    parse_server_env,
)
from stickyws.settings.values import ENV_PREFIX

if TYPE_CHECKING:
    from stickyws.settings.model import Settings


CheckFn = Callable[["Settings"], Iterable[Finding]]

LB, SERVICE, SERVER, REFERENCE, CLIENT, REGISTRY = (
    Scope.LOAD_BALANCER,
    Scope.SERVICE,
    Scope.SERVER,
    Scope.REFERENCE_SERVER,
    Scope.CLIENT,
    Scope.REGISTRY,
)


@dataclass(frozen=True)
class Rule:
    """A named check over the whole settings object, and the parts of a deployment it speaks of."""

    id: str
    summary: str
    check: CheckFn
    scopes: frozenset[Scope] = frozenset()


#: Every rule by id, in registration order (the order of reports and tables).
RULES: Rulebook[Rule] = Rulebook("rule")


def rule(rule_id: str, summary: str, *scopes: Scope) -> Callable[[CheckFn], CheckFn]:
    """Register ``fn`` as the rule ``rule_id``, run only where every one of ``scopes`` is present."""

    def make(fn: CheckFn) -> Rule:
        return Rule(rule_id, summary, fn, frozenset(scopes))

    return RULES.decorator(make)


_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True)
class Skipped:
    """A rule that does not apply to the deployment in front of it, and why."""

    rule: Rule
    reason: str


@dataclass(frozen=True)
class RulePlan:
    """Which rules run for a deployment's parts (in registration order) and which are skipped.

    ``known`` holds the settings that describe this deployment: a finding that names any other
    setting (a reference-server setting of your own server's deployment, say) is not reported.
    """

    applied: tuple[Rule, ...]
    skipped: tuple[Skipped, ...]
    scopes: frozenset[Scope]
    known: frozenset[str]

    def describe_skipped(self) -> list[str]:
        """One line per skipped rule: ``rule-id: reason``."""
        return [f"{s.rule.id}: {s.reason}" for s in self.skipped]


def plan(settings: Settings, parts: Iterable[Scope] | None = None) -> RulePlan:
    """The rules that apply to a deployment with ``parts`` (default: every part), given its server mode.

    ``parts`` are taken from :data:`~stickyws.settings.scopes.PARTS`; ``REFERENCE_SERVER`` and
    ``CLIENT`` are added when ``SERVER`` is there and ``server_mode`` is ``reference``. For your own
    server a rule about the server runs only when every server-side setting it reads is told to your
    server (``server_env``).
    """
    given = PARTS if parts is None else frozenset(parts)
    if not given <= PARTS:
        raise ValueError(f"parts are {sorted(p.value for p in PARTS)}, not {sorted(p.value for p in given - PARTS)}")
    reference = not settings.own_server
    scopes = given | ({REFERENCE, CLIENT} if SERVER in given and reference else frozenset())
    known = frozenset(name for name in settings.fields_index if _known(settings, name, scopes, reference))
    applied: list[Rule] = []
    skipped: list[Skipped] = []
    for r in RULES.values():
        missing = r.scopes - scopes
        if missing:
            skipped.append(Skipped(r, _missing_reason(missing, SERVER in given)))
            continue
        if SERVER in r.scopes and not reference:
            untold = [n for n in settings_read_by(r.id, settings) if n not in known and _server_side(settings, n)]
            if untold:
                skipped.append(Skipped(r, f"your server is not told {', '.join(untold)} (add it to server_env)"))
                continue
        applied.append(r)
    return RulePlan(tuple(applied), tuple(skipped), scopes, known)


def validate(
    settings: Settings, rule_ids: Iterable[str] | None = None, *, parts: Iterable[Scope] | None = None
) -> list[Finding]:
    """Run the rules that apply to ``parts`` (see :func:`plan`), or only ``rule_ids`` among them; errors first.

    Findings that name a setting the deployment does not have are left out.
    """
    chosen = plan(settings, parts)
    rules = chosen.applied if rule_ids is None else [r for r in chosen.applied if r.id in set(rule_ids)]
    findings = [f for r in rules for f in r.check(settings) if all(n in chosen.known for n in f.settings)]
    return sorted(findings, key=lambda f: _ORDER[f.severity])


def _server_side(settings: Settings, name: str) -> bool:
    return settings.fields_index[name].group in SERVER_SIDE_GROUPS and name not in ALWAYS_KNOWN


def _known(settings: Settings, name: str, scopes: frozenset[Scope], reference: bool) -> bool:
    """Whether setting ``name`` describes a deployment with ``scopes``."""
    group = settings.fields_index[name].group
    if group not in SERVER_SIDE_GROUPS:
        return GROUP_SCOPES[group] in scopes
    if SERVER not in scopes:
        return False
    if reference or name in ALWAYS_KNOWN:
        return GROUP_SCOPES[group] in scopes
    return name in settings.told_env()


_PART_NAMES = {
    LB: "no load balancer",
    SERVICE: "no ECS service",
    SERVER: "no server",
    REGISTRY: "no registry it creates",
}


def _missing_reason(missing: frozenset[Scope], has_server: bool) -> str:
    """Why a rule whose ``missing`` scopes are absent does not apply (``has_server``: a server is there)."""
    absent = [_PART_NAMES[s] for s in sorted(missing, key=lambda s: s.value) if s in _PART_NAMES]
    reference_only = bool(missing & {REFERENCE, CLIENT})
    if reference_only and not has_server and "no server" not in absent:
        absent.append("no server")
    reasons = ["the deployment has " + " and ".join(absent)] if absent else []
    if reference_only and has_server:
        reasons.append("the server is your own (server_mode=own), not the reference server")
    return "; ".join(reasons)


def settings_read_by(rule_id: str, settings: Settings) -> tuple[str, ...]:
    """Flat names of the settings that rule ``rule_id`` reads when judging ``settings``.

    Found by running the (pure) rule on a recording proxy, so callers can show the values a passing
    rule looked at, and the plan can tell which settings a rule needs, without a second list of what
    each rule reads.
    """
    seen: list[str] = []
    list(RULES[rule_id].check(cast("Settings", _SettingsRecorder(settings, seen))))
    return tuple(dict.fromkeys(seen))


class _SettingsRecorder:
    """Stands in for :class:`Settings` and records each setting a rule reads."""

    def __init__(self, settings: Settings, seen: list[str]) -> None:
        self._settings = settings
        self._seen = seen
        self.fields_index = settings.fields_index  # rules read specs through it

    def __getattr__(self, group: str) -> Any:
        return _GroupRecorder(getattr(self._settings, group), self._seen, self.fields_index)

    def __getitem__(self, name: str) -> Any:
        self._seen.append(name)
        return self._settings[name]

    def items(self) -> Iterator[tuple[str, Any]]:
        for name, value in self._settings.items():
            self._seen.append(name)
            yield name, value


class _GroupRecorder:
    def __init__(self, group: object, seen: list[str], fields: Any) -> None:
        self._group = group
        self._seen = seen
        self._fields = fields

    def __getattr__(self, name: str) -> Any:
        if name in self._fields:
            self._seen.append(name)
        return getattr(self._group, name)


def _error(rule_id: str, message: str, fix: str, *names: str) -> Finding:
    return Finding(rule_id, Severity.ERROR, message, fix, names)


def _warning(rule_id: str, message: str, fix: str, *names: str) -> Finding:
    return Finding(rule_id, Severity.WARNING, message, fix, names)


def _info(rule_id: str, message: str, *names: str) -> Finding:
    return Finding(rule_id, Severity.INFO, message, "", names)


@rule("in-range", "Every setting lies inside its AWS (or stickyws) range.")
def _in_range(s: Settings) -> Iterator[Finding]:
    for name, value in s.items():
        spec = s.fields_index[name].spec
        if value is None:
            if not spec.nullable:
                yield _error("in-range", f"{name} is unset", f"set {name} ({spec.describe_range()})", name)
            continue
        if spec.choices:
            if str(value) not in spec.choices:
                yield _error(
                    "in-range",
                    f"{name}={value!r} is not one of {spec.describe_range()} ({spec.source})",
                    f"set {name} to one of {spec.describe_range()}",
                    name,
                )
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if (spec.lo is not None and value < spec.lo) or (spec.hi is not None and value > spec.hi):
            yield _error(
                "in-range",
                f"{name}={value:g} is outside the {spec.source} range {spec.describe_range()}",
                f"set {name} within {spec.describe_range()}",
                name,
            )


@rule("http2-off", "HTTP/2 is off on a load balancer that serves WebSockets.", LB)
def _http2_off(s: Settings) -> Iterator[Finding]:
    if s.load_balancer.http2_enabled:
        yield _error(
            "http2-off",
            "http2_enabled=true: clients that negotiate h2 cannot upgrade to WebSocket",
            "set http2_enabled=false (routing.http2.enabled=false)",
            "http2_enabled",
        )


@rule("ping-within-idle-timeout", "The server pings at most every half idle timeout.", LB, SERVER)
def _ping_within_idle(s: Settings) -> Iterator[Finding]:
    ping, idle = s.server.ping_interval_s, s.load_balancer.idle_timeout_s
    if ping is None:
        yield _warning(
            "ping-within-idle-timeout",
            f"server pings are off: idle connections are cut after idle_timeout_s={idle}",
            f"set ping_interval_s to at most {idle / 2:g}",
            "ping_interval_s",
            "idle_timeout_s",
        )
    elif ping > idle / 2:
        yield _error(
            "ping-within-idle-timeout",
            f"ping_interval_s={ping:g} > idle_timeout_s/2={idle / 2:g}: one missed ping costs the connection",
            f"set ping_interval_s <= {idle / 2:g} or idle_timeout_s >= {2 * ping:g}",
            "ping_interval_s",
            "idle_timeout_s",
        )


@rule("drain-within-deregistration-delay", "Clients are migrated before the ALB cuts them.", LB, SERVER)
def _drain_within_dereg(s: Settings) -> Iterator[Finding]:
    drain, dereg = s.server.drain_window_s, s.target_group.deregistration_delay_s
    if drain > dereg:
        yield _error(
            "drain-within-deregistration-delay",
            f"drain_window_s={drain:g} > deregistration_delay_s={dereg}: the ALB cuts clients "
            "that have not been told to reconnect yet",
            f"set drain_window_s <= {dereg} or deregistration_delay_s >= {drain:g}",
            "drain_window_s",
            "deregistration_delay_s",
        )


@rule("stop-timeout-covers-shutdown", "stopTimeout leaves the server the time it needs after SIGTERM.", SERVICE, SERVER)
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


@rule("health-check-timing", "Health-check timeout is below the interval; time to healthy is known.", LB)
def _health_check(s: Settings) -> Iterator[Finding]:
    tg = s.target_group
    if tg.health_check_timeout_s >= tg.health_check_interval_s:
        yield _error(
            "health-check-timing",
            f"health_check_timeout_s={tg.health_check_timeout_s} >= "
            f"health_check_interval_s={tg.health_check_interval_s}",
            "make health_check_timeout_s smaller than health_check_interval_s",
            "health_check_timeout_s",
            "health_check_interval_s",
        )
    if not re.fullmatch(r"\d{3}(-\d{3})?(,\d{3}(-\d{3})?)*", tg.health_check_matcher) or any(
        not 200 <= int(code) <= 499 for code in re.findall(r"\d{3}", tg.health_check_matcher)
    ):
        yield _error(
            "health-check-timing",
            f"health_check_matcher={tg.health_check_matcher!r} is not codes or ranges within 200-499",
            "use e.g. 200 or 200-299",
            "health_check_matcher",
        )
    if not tg.health_check_path.startswith("/"):
        yield _error(
            "health-check-timing",
            f"health_check_path={tg.health_check_path!r} does not start with /",
            "use an absolute path such as /health",
            "health_check_path",
        )
    yield _info(
        "health-check-timing",
        f"a new task is healthy after about {tg.health_check_interval_s * tg.healthy_threshold_count} s "
        f"(interval x healthy threshold); a failed one is out after about "
        f"{tg.health_check_interval_s * tg.unhealthy_threshold_count} s",
        "health_check_interval_s",
        "healthy_threshold_count",
    )


@rule("stickiness", "Stickiness is on, of a valid type, and outlives the client's reconnect backoff.", LB)
def _stickiness(s: Settings) -> Iterator[Finding]:
    tg = s.target_group
    if not tg.stickiness_enabled:
        yield _error(
            "stickiness",
            "stickiness_enabled=false: reconnects land on any task",
            "set stickiness_enabled=true",
            "stickiness_enabled",
        )
    if tg.stickiness_type == "app_cookie":
        name = tg.app_cookie_name
        if not name:
            yield _error(
                "stickiness",
                "stickiness_type=app_cookie needs app_cookie_name",
                "set app_cookie_name to the cookie your application issues",
                "app_cookie_name",
            )
        elif name.startswith(("AWSALB", "AWSALBAPP", "AWSALBTG")):
            yield _error(
                "stickiness",
                f"app_cookie_name={name!r} uses a prefix the ALB reserves",
                "pick a name that does not start with AWSALB",
                "app_cookie_name",
            )
    if tg.stickiness_duration_s < s.client.reconnect_cap_s:
        yield _error(
            "stickiness",
            f"stickiness_duration_s={tg.stickiness_duration_s} < reconnect_cap_s={s.client.reconnect_cap_s:g}: "
            "a client backing off loses its task",
            f"set stickiness_duration_s >= {s.client.reconnect_cap_s:g}",
            "stickiness_duration_s",
            "reconnect_cap_s",
        )


@rule("registry-ttl-order", "routing TTL > heartbeat TTL > heartbeat interval.", REFERENCE)
def _ttl_order(s: Settings) -> Iterator[Finding]:
    sv = s.server
    if not sv.routing_ttl_s > sv.heartbeat_ttl_s:
        yield _error(
            "registry-ttl-order",
            f"routing_ttl_s={sv.routing_ttl_s} <= heartbeat_ttl_s={sv.heartbeat_ttl_s}: routes expire "
            "while their server is still alive",
            f"set routing_ttl_s > {sv.heartbeat_ttl_s}",
            "routing_ttl_s",
            "heartbeat_ttl_s",
        )
    if not sv.heartbeat_ttl_s > sv.heartbeat_interval_s:
        yield _error(
            "registry-ttl-order",
            f"heartbeat_ttl_s={sv.heartbeat_ttl_s} <= heartbeat_interval_s={sv.heartbeat_interval_s:g}: "
            "a live server looks dead between beats",
            f"set heartbeat_ttl_s > {sv.heartbeat_interval_s:g} (3 x is usual)",
            "heartbeat_ttl_s",
            "heartbeat_interval_s",
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


@rule("fargate-task-size", "Task CPU and memory form a pairing Fargate accepts.", SERVICE)
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


@rule("task-counts", "min_count <= desired_count <= max_count.", SERVICE)
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


@rule("deployment-keeps-capacity", "Deployments start replacements before old tasks drain.", SERVICE)
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


@rule(
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


@rule(
    "deployment-moves-connections",
    "A deployment moves open WebSockets to the new revision instead of cutting them.",
    SERVICE,
)
def _deployment_moves_connections(s: Settings) -> Iterator[Finding]:
    strategy = s.deployment.deployment_strategy
    if strategy != "rolling":
        yield _warning(
            "deployment-moves-connections",
            f"deployment_strategy={strategy}: the traffic shift moves new handshakes only; every open WebSocket "
            f"stays on blue until ECS stops all blue tasks together after bake_time_min={s.deployment.bake_time_min}, "
            "and then every one of them reconnects at once",
            "use deployment_strategy=rolling, whose drain notice moves the clients of one task at a time",
            "deployment_strategy",
        )


@rule("scaling-below-limit", "The autoscaling target per task is below the connection limit.", SERVICE, SERVER)
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


@rule(
    "topic-retention-covers-reconnect",
    "Topic history outlives a drain and a reconnect backoff; clients offline longer are told, not silently skipped.",
    REFERENCE,
    CLIENT,
)
def _topic_retention(s: Settings) -> Iterator[Finding]:
    d, sv = s.delivery, s.server
    needed = sv.drain_window_s + s.client.reconnect_cap_s
    if d.topic_retention_s < needed:
        yield _error(
            "topic-retention-covers-reconnect",
            f"topic_retention_s={d.topic_retention_s} < drain_window_s + reconnect_cap_s = {needed:g}: clients "
            "moved by a drain can find their missed publications gone",
            f"set topic_retention_s >= {needed:g}",
            "topic_retention_s",
            "drain_window_s",
            "reconnect_cap_s",
        )
    elif d.topic_retention_s < sv.session_ttl_s:
        yield _info(
            "topic-retention-covers-reconnect",
            f"topic_retention_s={d.topic_retention_s} < session_ttl_s={sv.session_ttl_s}: a client offline "
            "longer than the retention resumes its session but gets `unrecoverable` for its topics",
            "topic_retention_s",
            "session_ttl_s",
        )


@rule(
    "output-bound-fits-messages", "A connection's output bound holds at least two of the largest messages.", REFERENCE
)
def _output_bound(s: Settings) -> Iterator[Finding]:
    d = s.delivery
    largest = max(s.server.max_message_bytes, d.max_publish_bytes)
    if d.max_output_bytes < 2 * largest:
        yield _error(
            "output-bound-fits-messages",
            f"max_output_bytes={d.max_output_bytes} < 2 x the largest message ({largest} bytes): one message "
            "can close a healthy connection as a slow consumer",
            f"set max_output_bytes >= {2 * largest}",
            "max_output_bytes",
            "max_message_bytes",
            "max_publish_bytes",
        )
    if d.outbox_max_bytes < d.max_publish_bytes:
        yield _warning(
            "output-bound-fits-messages",
            f"outbox_max_bytes={d.outbox_max_bytes} < max_publish_bytes={d.max_publish_bytes}: a push that large "
            "evicts every other message of the session",
            f"set outbox_max_bytes >= {d.max_publish_bytes}",
            "outbox_max_bytes",
            "max_publish_bytes",
        )


@rule("publish-port-apart", "The publish endpoint listens on its own port, which the ALB never routes.", REFERENCE)
def _publish_port(s: Settings) -> Iterator[Finding]:
    d = s.delivery
    if d.publish_port and d.publish_port == s.server.port:
        yield _error(
            "publish-port-apart",
            f"publish_port={d.publish_port} is the WebSocket port: the ALB would route to the publish endpoint",
            "set publish_port to another port (or 0 to turn the endpoint off)",
            "publish_port",
            "port",
        )


@rule("server-env", "The settings your own server is told are named once each, under valid variable names.", SERVER)
def _server_env(s: Settings) -> Iterator[Finding]:
    entries = s.server.server_env
    if not s.own_server:
        if entries:
            yield _error(
                "server-env",
                f"server_env={','.join(entries)!r} with server_mode=reference: the reference server reads every "
                "setting as STICKYWS_<NAME>",
                "set server_mode=own to run your own image, or leave server_env empty",
                "server_env",
                "server_mode",
            )
        return
    names = {name: ENV_PREFIX + name.upper() for name in s.fields_index}
    for problem in parse_server_env(entries, names)[1]:
        yield _error("server-env", problem, "write server_env as NAME=VARIABLE entries, e.g. port=PORT", "server_env")


#: Engine versions a new registry is pinned to when ``registry_engine_version`` is empty.
DEFAULT_ENGINE_VERSIONS = {"valkey": "8.0", "redis": "7.1"}
#: Oldest version with sharded pub/sub (SPUBLISH/SSUBSCRIBE), per engine.
SHARDED_PUBSUB_SINCE = {"valkey": (7, 0), "redis": (7, 0)}
#: Oldest version ElastiCache supports IAM authentication on, per engine.
IAM_AUTH_SINCE = {"valkey": (7, 2), "redis": (7, 0)}
#: ``maxclients`` of an ElastiCache Serverless cache (fixed).
SERVERLESS_MAX_CLIENTS = 65_000
#: Serverless fixes ``client-output-buffer-limit pubsub`` at 32 MiB hard, 8 MiB soft for 60 s.
SERVERLESS_PUBSUB_HARD_BYTES = 32 * 1024 * 1024
SERVERLESS_PUBSUB_SOFT_BYTES = 8 * 1024 * 1024
#: Nodes (primaries and replicas) a cluster-mode replication group may have.
MAX_CLUSTER_NODES = 500
#: Registry connections one server holds at most: its command pool (64) and one pub/sub connection.
REGISTRY_CONNECTIONS_PER_SERVER = 65


def engine_version(s: Settings) -> tuple[int, int] | None:
    """``(major, minor)`` of the registry's engine version (the pinned default when empty); ``None`` if unparsable."""
    text = s.registry.registry_engine_version or DEFAULT_ENGINE_VERSIONS.get(s.registry.registry_engine, "")
    match = re.fullmatch(r"(\d+)(?:\.(\d+))?", text.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


@rule(
    "registry-topology", "The registry has a replica per shard for failover and a topology its mode allows.", REGISTRY
)
def _registry_topology(s: Settings) -> Iterator[Finding]:
    r = s.registry
    if r.registry_mode == "serverless":
        yield _info(
            "registry-topology",
            "registry_mode=serverless: ElastiCache places and replicates the data across availability zones "
            "itself; registry_shards, registry_replicas_per_shard and registry_node_type do not apply",
            "registry_mode",
        )
        return
    if r.registry_replicas_per_shard < 1:
        yield _error(
            "registry-topology",
            f"registry_replicas_per_shard=0 with registry_mode={r.registry_mode}: no replica can take over, so "
            "Multi-AZ automatic failover is impossible and a failed primary loses the registry",
            "set registry_replicas_per_shard >= 1",
            "registry_replicas_per_shard",
            "registry_mode",
        )
    if r.registry_mode == "single" and r.registry_shards != 1:
        yield _error(
            "registry-topology",
            f"registry_shards={r.registry_shards} with registry_mode=single: a single-primary registry has one shard",
            "set registry_mode=cluster to shard the registry, or registry_shards=1",
            "registry_shards",
            "registry_mode",
        )
    if not re.fullmatch(r"cache\.[a-z0-9]+\.[a-z0-9]+", r.registry_node_type):
        yield _error(
            "registry-topology",
            f"registry_node_type={r.registry_node_type!r} is not an ElastiCache node type",
            "use a name such as cache.t4g.small or cache.r7g.large",
            "registry_node_type",
        )
    nodes = r.registry_shards * (1 + r.registry_replicas_per_shard)
    if r.registry_mode == "cluster" and nodes > MAX_CLUSTER_NODES:
        yield _error(
            "registry-topology",
            f"registry_shards={r.registry_shards} x (1 + registry_replicas_per_shard={r.registry_replicas_per_shard}) "
            f"= {nodes} nodes > {MAX_CLUSTER_NODES}, the most a cluster-mode replication group may have",
            f"keep registry_shards x (1 + registry_replicas_per_shard) <= {MAX_CLUSTER_NODES}",
            "registry_shards",
            "registry_replicas_per_shard",
        )
    if r.registry_mode == "cluster":
        yield _info(
            "registry-topology",
            f"registry_mode=cluster: {r.registry_shards} shard(s) x {1 + r.registry_replicas_per_shard} nodes = "
            f"{r.registry_shards * (1 + r.registry_replicas_per_shard)} cache nodes",
            "registry_shards",
            "registry_replicas_per_shard",
        )


@rule("registry-engine", "The engine version parses and supports what the mode and the auth mode need.", REGISTRY)
def _registry_engine(s: Settings) -> Iterator[Finding]:
    r = s.registry
    version = engine_version(s)
    if version is None:
        yield _error(
            "registry-engine",
            f"registry_engine_version={r.registry_engine_version!r} is not a version such as 8.0",
            "set registry_engine_version to major.minor (e.g. 8.0), or leave it empty for the pinned default",
            "registry_engine_version",
        )
        return
    shown = f"{version[0]}.{version[1]}"
    if r.registry_mode != "single" and version < SHARDED_PUBSUB_SINCE[r.registry_engine]:
        yield _error(
            "registry-engine",
            f"registry_mode={r.registry_mode} with {r.registry_engine} {shown}: sharded pub/sub "
            "(SPUBLISH/SSUBSCRIBE), which a cluster needs for per-server and per-user channels, starts with 7.0",
            "set registry_engine_version to 7.0 or newer (or leave it empty)",
            "registry_engine_version",
            "registry_mode",
        )
    since = IAM_AUTH_SINCE[r.registry_engine]
    if r.registry_auth == "iam" and version < since:
        yield _error(
            "registry-engine",
            f"registry_auth=iam with {r.registry_engine} {shown}: ElastiCache supports IAM authentication from "
            f"{r.registry_engine} {since[0]}.{since[1]}",
            f"set registry_engine_version >= {since[0]}.{since[1]}, or registry_auth=token",
            "registry_engine_version",
            "registry_auth",
        )


@rule("registry-auth", "The registry authenticates its clients.", REGISTRY)
def _registry_auth(s: Settings) -> Iterator[Finding]:
    if s.registry.registry_auth == "none":
        yield _warning(
            "registry-auth",
            "registry_auth=none: any client the registry's security group admits may write drain notices, "
            "takeover requests and sessions",
            "set registry_auth=iam (or token)",
            "registry_auth",
        )


@rule(
    "registry-pubsub-backlog",
    "A server's pub/sub burst fits the registry's pub/sub output buffer.",
    REGISTRY,
    REFERENCE,
)
def _registry_pubsub(s: Settings) -> Iterator[Finding]:
    r = s.registry
    hard, soft = r.registry_pubsub_buffer_hard_bytes, r.registry_pubsub_buffer_soft_bytes
    if r.registry_mode == "serverless" and (hard, soft) != (SERVERLESS_PUBSUB_HARD_BYTES, SERVERLESS_PUBSUB_SOFT_BYTES):
        yield _error(
            "registry-pubsub-backlog",
            f"registry_pubsub_buffer_hard_bytes={hard}, registry_pubsub_buffer_soft_bytes={soft} with "
            "registry_mode=serverless: Serverless fixes the pub/sub output buffer at 32 MiB hard, 8 MiB soft",
            f"set registry_pubsub_buffer_hard_bytes={SERVERLESS_PUBSUB_HARD_BYTES} and "
            f"registry_pubsub_buffer_soft_bytes={SERVERLESS_PUBSUB_SOFT_BYTES}",
            "registry_pubsub_buffer_hard_bytes",
            "registry_pubsub_buffer_soft_bytes",
        )
        return
    if soft > hard:
        yield _error(
            "registry-pubsub-backlog",
            f"registry_pubsub_buffer_soft_bytes={soft} > registry_pubsub_buffer_hard_bytes={hard}",
            "keep the soft limit at or below the hard limit",
            "registry_pubsub_buffer_soft_bytes",
            "registry_pubsub_buffer_hard_bytes",
        )
        return
    burst = r.registry_pubsub_burst_messages * s.server.max_message_bytes
    names = ("registry_pubsub_burst_messages", "max_message_bytes")
    if burst >= hard:
        yield _error(
            "registry-pubsub-backlog",
            f"registry_pubsub_burst_messages x max_message_bytes = {burst} bytes >= the pub/sub hard limit {hard}: "
            "the registry disconnects a server's subscription in such a burst and every server must resubscribe",
            f"keep registry_pubsub_burst_messages <= {max(1, (hard - 1) // s.server.max_message_bytes)} "
            "or lower max_message_bytes",
            *names,
            "registry_pubsub_buffer_hard_bytes",
        )
    elif soft and burst > soft:
        yield _warning(
            "registry-pubsub-backlog",
            f"registry_pubsub_burst_messages x max_message_bytes = {burst} bytes > the pub/sub soft limit {soft}: "
            "a server that stays this far behind for 60 s loses its subscription",
            f"keep registry_pubsub_burst_messages <= {soft // s.server.max_message_bytes} or lower max_message_bytes",
            *names,
            "registry_pubsub_buffer_soft_bytes",
        )


@rule(
    "registry-serverless-clients",
    "Every task's registry connections fit a Serverless cache's client limit.",
    REGISTRY,
    SERVICE,
)
def _registry_serverless_clients(s: Settings) -> Iterator[Finding]:
    if s.registry.registry_mode != "serverless":
        return
    need = s.task.max_count * REGISTRY_CONNECTIONS_PER_SERVER
    if need > SERVERLESS_MAX_CLIENTS:
        yield _error(
            "registry-serverless-clients",
            f"max_count={s.task.max_count} tasks x {REGISTRY_CONNECTIONS_PER_SERVER} registry connections = {need} "
            f"> {SERVERLESS_MAX_CLIENTS}, the client limit of a Serverless cache",
            f"set max_count <= {SERVERLESS_MAX_CLIENTS // REGISTRY_CONNECTIONS_PER_SERVER}, or registry_mode=cluster",
            "max_count",
            "registry_mode",
        )
