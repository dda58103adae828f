"""Rules and checks defined across modules are registered in the one order their package lists."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from stickyws.audit import checks
from stickyws.rulebook import Rulebook
from stickyws.settings import rules


@dataclass(frozen=True)
class Entry:
    id: str


def test_add_in_order_registers_in_the_listed_order_not_the_defined_one() -> None:
    """Entries defined as b, a, c and listed as a, b, c iterate as a, b, c."""
    defined: Rulebook[Entry] = Rulebook("entry")
    for entry_id in ("b", "a", "c"):
        defined.add(Entry(entry_id))
    book: Rulebook[Entry] = Rulebook("entry")
    book.add_in_order(defined, ["a", "b", "c"], listed_in="the list")
    assert list(book) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (["a"], r"^'b' is defined but not listed: list each entry id once in the list$"),
        (["a", "b", "x"], r"^'x' is listed but not defined: list each entry id once in the list$"),
    ],
)
def test_add_in_order_refuses_a_list_that_does_not_match_and_registers_nothing(order: list[str], message: str) -> None:
    """A defined id left out, or a listed id not defined, raises RuntimeError naming it, and the book stays empty."""
    defined: Rulebook[Entry] = Rulebook("entry")
    defined.add(Entry("a"))
    defined.add(Entry("b"))
    book: Rulebook[Entry] = Rulebook("entry")
    with pytest.raises(RuntimeError, match=message):
        book.add_in_order(defined, order, listed_in="the list")
    assert list(book) == []


def test_rules_and_checks_are_registered_in_the_order_of_their_packages() -> None:
    """RULES holds exactly the rules the modules define, in ORDER; CHECKS likewise."""
    assert list(rules.RULES) == list(rules.ORDER)
    assert list(checks.CHECKS) == list(checks.ORDER)
