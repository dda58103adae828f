"""The rule engine: what a rule is, the registry of rules, and which rules judge a deployment.

A rule is a small pure function of :class:`Settings` that yields :class:`Finding` objects, and
carries the :class:`~stickyws.settings.scopes.Scope` values it speaks of. :func:`plan` picks the
rules that apply to a deployment's parts, :func:`validate` runs them, and :func:`settings_read_by`
tells which settings a rule reads. The rules themselves live in the modules of
:mod:`stickyws.settings.rules`, defined with :func:`define_rule` and registered in :data:`RULES` in
the order the package lists; :func:`rule` registers a further rule directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from stickyws.rulebook import Rulebook
from stickyws.settings.findings import Finding, Severity
from stickyws.settings.scopes import (
    ALWAYS_KNOWN,
    GROUP_SCOPES,
    OPT_IN_PARTS,
    PARTS,
    SERVER_SIDE_GROUPS,
    STACK_PARTS,
    Scope,
)

if TYPE_CHECKING:
    from stickyws.settings.model import Settings


CheckFn = Callable[["Settings"], Iterable[Finding]]

LB, SERVICE, SERVER, REFERENCE, CLIENT, REGISTRY, KUBERNETES = (
    Scope.LOAD_BALANCER,
    Scope.SERVICE,
    Scope.SERVER,
    Scope.REFERENCE_SERVER,
    Scope.CLIENT,
    Scope.REGISTRY,
    Scope.KUBERNETES,
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
#: The rules of the package's modules by id, before the package registers them in :data:`RULES`.
DEFINED: Rulebook[Rule] = Rulebook("rule")


def rule(rule_id: str, summary: str, *scopes: Scope, book: Rulebook[Rule] = RULES) -> Callable[[CheckFn], CheckFn]:
    """Register ``fn`` as the rule ``rule_id`` (in ``book``), run only where every one of ``scopes`` is present."""

    def make(fn: CheckFn) -> Rule:
        return Rule(rule_id, summary, fn, frozenset(scopes))

    return book.decorator(make)


def define_rule(rule_id: str, summary: str, *scopes: Scope) -> Callable[[CheckFn], CheckFn]:
    """:func:`rule` for the package's modules: ``fn`` goes to :data:`DEFINED`, and the package registers it in
    :data:`RULES` in the order it lists, whatever module the rule lives in."""
    return rule(rule_id, summary, *scopes, book=DEFINED)


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
    ``left_out`` holds the rules of a part that is in a plan only when named
    (:data:`~stickyws.settings.scopes.OPT_IN_PARTS`: the Kubernetes rules of an ECS deployment).
    """

    applied: tuple[Rule, ...]
    skipped: tuple[Skipped, ...]
    scopes: frozenset[Scope]
    known: frozenset[str]
    left_out: tuple[Rule, ...] = ()

    def describe_skipped(self) -> list[str]:
        """One line per skipped rule: ``rule-id: reason``."""
        return [f"{s.rule.id}: {s.reason}" for s in self.skipped]


def plan(settings: Settings, parts: Iterable[Scope] | None = None) -> RulePlan:
    """The rules that apply to a deployment with ``parts`` (default: the reference ECS stack's parts), given its
    server mode.

    ``parts`` are taken from :data:`~stickyws.settings.scopes.PARTS` (default
    :data:`~stickyws.settings.scopes.STACK_PARTS`); ``REFERENCE_SERVER`` and ``CLIENT`` are added when
    ``SERVER`` is there and ``server_mode`` is ``reference``. For your own server a rule about the server
    runs only when every server-side setting it reads is told to your server (``server_env``). A rule of an
    opt-in part (``KUBERNETES``) that ``parts`` do not name is left out: neither applied nor skipped.
    """
    given = STACK_PARTS if parts is None else frozenset(parts)
    if not given <= PARTS:
        raise ValueError(f"parts are {sorted(p.value for p in PARTS)}, not {sorted(p.value for p in given - PARTS)}")
    reference = not settings.own_server
    scopes = given | ({REFERENCE, CLIENT} if SERVER in given and reference else frozenset())
    known = frozenset(name for name in settings.fields_index if _known(settings, name, scopes, reference))
    applied: list[Rule] = []
    skipped: list[Skipped] = []
    left_out: list[Rule] = []
    for r in RULES.values():
        if r.scopes & (OPT_IN_PARTS - given):
            left_out.append(r)
            continue
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
    return RulePlan(tuple(applied), tuple(skipped), scopes, known, tuple(left_out))


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
    KUBERNETES: "no Kubernetes workload",
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
