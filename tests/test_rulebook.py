"""One registry shape for the settings rules and the deployment checks, and one Severity -> Status vocabulary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pytest

from stickyws.audit.checks import CHECKS, STATUS_OF_SEVERITY, Status, deployment_check, status_of
from stickyws.rulebook import Rulebook
from stickyws.settings import RULES, Severity
from stickyws.settings.rules import rule


@dataclass(frozen=True)
class Entry:
    id: str
    size: int


def test_a_rulebook_iterates_in_registration_order_and_hands_the_function_back() -> None:
    """Entries come back in the order they were registered, and the decorated function is unchanged."""
    book: Rulebook[Entry] = Rulebook("entry")

    def zeta() -> None: ...

    def alpha() -> None: ...

    assert book.decorator(lambda fn: Entry(fn.__name__, 1))(zeta) is zeta
    book.add(Entry("middle", 2))
    assert book.decorator(lambda fn: Entry(fn.__name__, 3))(alpha) is alpha
    assert list(book) == ["zeta", "middle", "alpha"]
    assert [e.size for e in book.values()] == [1, 2, 3]
    assert (len(book), book["middle"], "nope" in book) == (3, Entry("middle", 2), False)


def test_a_rulebook_refuses_an_id_twice_and_keeps_the_first() -> None:
    """Registering a taken id raises ValueError naming it, and the first entry stays."""
    book: Rulebook[Entry] = Rulebook("entry")
    book.add(Entry("one", 1))
    with pytest.raises(ValueError, match=r"^entry 'one' registered twice: give it another id$"):
        book.add(Entry("one", 2))
    assert dict(book) == {"one": Entry("one", 1)}


def test_a_rulebook_refuses_an_id_of_a_rulebook_it_shares_ids_with() -> None:
    """A check may not take a rule's id: the audit shows both in one table, one row per id."""
    rules: Rulebook[Entry] = Rulebook("rule")
    checks: Rulebook[Entry] = Rulebook("check", shares_ids_with=[rules])
    rules.add(Entry("shared", 1))
    with pytest.raises(ValueError, match=r"^check 'shared': the id is already a rule; give it another id$"):
        checks.add(Entry("shared", 2))
    assert list(checks) == []


def test_rulebooks_are_read_only_mappings() -> None:
    """A rulebook is a Mapping without item assignment: entries come in only through add or the decorator."""
    book: Rulebook[Entry] = Rulebook("entry")
    assert isinstance(book, Mapping)
    assert not hasattr(book, "__setitem__")


def test_rules_and_checks_are_rulebooks_with_disjoint_ids() -> None:
    """RULES and CHECKS share the shape, and no id is both a rule and a check."""
    assert isinstance(RULES, Rulebook)
    assert isinstance(CHECKS, Rulebook)
    assert (RULES.kind, CHECKS.kind) == ("rule", "check")
    assert len(RULES) >= 10
    assert len(CHECKS) >= 5
    assert set(RULES) & set(CHECKS) == set()


def test_rule_and_deployment_check_refuse_a_taken_id() -> None:
    """rule() refuses a rule's id and deployment_check() a rule's or a check's, leaving both registries as they were."""
    rules_before, checks_before = list(RULES), list(CHECKS)
    first_check = checks_before[0]
    with pytest.raises(ValueError, match=r"^rule 'in-range' registered twice"):
        rule("in-range", "again")(lambda settings: [])
    with pytest.raises(ValueError, match=r"^check 'in-range': the id is already a rule"):
        deployment_check("in-range", "again")(lambda ctx: (Status.PASS, "", ""))
    with pytest.raises(ValueError, match=rf"^check '{first_check}' registered twice"):
        deployment_check(first_check, "again")(lambda ctx: (Status.PASS, "", ""))
    assert (list(RULES), list(CHECKS)) == (rules_before, checks_before)


def test_every_severity_has_one_status() -> None:
    """An error fails, a warning warns, information passes; skip comes only from the plan."""
    assert dict(STATUS_OF_SEVERITY) == {
        Severity.ERROR: Status.FAIL,
        Severity.WARNING: Status.WARN,
        Severity.INFO: Status.PASS,
    }


@pytest.mark.parametrize(
    ("severities", "expected"),
    [
        ((), Status.PASS),
        ((Severity.INFO,), Status.PASS),
        ((Severity.INFO, Severity.WARNING), Status.WARN),
        ((Severity.WARNING, Severity.ERROR, Severity.INFO), Status.FAIL),
    ],
)
def test_a_rules_status_is_its_worst_findings(severities: tuple[Severity, ...], expected: Status) -> None:
    """A rule's row takes the status of its most severe finding, pass when it found nothing."""
    assert status_of(severities) is expected
