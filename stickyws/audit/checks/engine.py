"""What a deployment check and an audit's row are, and the registry of deployment checks.

A deployment check is a function of a :class:`Context` that returns an :class:`Outcome`, with the
scopes it speaks of. The checks live in the modules of :mod:`stickyws.audit.checks`, defined with
:func:`define_check` and registered in :data:`CHECKS` in the order the package lists;
:func:`deployment_check` registers a further check directly. :func:`short_name` is the one way the
checks name an AWS resource.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from stickyws.audit.mapping import Observation
from stickyws.audit.view import DeploymentView
from stickyws.rulebook import Rulebook
from stickyws.settings import RULES, Scope, Settings, Severity
from stickyws.settings.scopes import OPT_IN_PARTS


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
#: The checks of the package's modules by id, before the package registers them in :data:`CHECKS`.
DEFINED: Rulebook[DeploymentCheck] = Rulebook("check", shares_ids_with=[RULES])


def deployment_check(
    check_id: str, summary: str, *scopes: Scope, book: Rulebook[DeploymentCheck] = CHECKS
) -> Callable[[CheckFn], CheckFn]:
    """Register ``fn`` as the deployment check ``check_id`` (in ``book``), run only where every one of ``scopes`` is
    present."""

    def make(fn: CheckFn) -> DeploymentCheck:
        return DeploymentCheck(check_id, summary, fn, frozenset(scopes))

    return book.decorator(make)


def define_check(check_id: str, summary: str, *scopes: Scope) -> Callable[[CheckFn], CheckFn]:
    """:func:`deployment_check` for the package's modules: ``fn`` goes to :data:`DEFINED`, and the package registers
    it in :data:`CHECKS` in the order it lists, whatever module the check lives in."""
    return deployment_check(check_id, summary, *scopes, book=DEFINED)


def catalog() -> list[tuple[str, str, str]]:
    """``(id, kind, summary)`` of every rule and check the audit runs, in report order.

    The rules of a part that is judged only when named (:data:`stickyws.settings.scopes.OPT_IN_PARTS`, the
    Kubernetes rules) are not listed: only ``--k8s`` (:mod:`stickyws.audit.k8s`) names that part, and
    docs/eks.md lists them.
    """
    rows = [(r.id, "setting", r.summary) for r in RULES.values() if not r.scopes & OPT_IN_PARTS]
    return rows + [(c.id, "deployment", c.summary) for c in CHECKS.values()]


def scopes_of(rule_id: str) -> frozenset[Scope]:
    """The scopes of the rule or deployment check ``rule_id`` (KeyError if there is none)."""
    return RULES[rule_id].scopes if rule_id in RULES else CHECKS[rule_id].scopes


#: The scopes the checks speak of, by short name.
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
