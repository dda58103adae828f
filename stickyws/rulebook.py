"""Named checks in registration order, each id registered once: the shape of every rule registry.

The settings model's rules (:data:`stickyws.settings.RULES`) and the auditor's deployment checks
(:data:`stickyws.audit.checks.CHECKS`) are both a :class:`Rulebook`: a read-only mapping from id to
entry that iterates in registration order, filled by a decorator (:meth:`Rulebook.decorator`) or
from entries defined across modules in a listed order (:meth:`Rulebook.add_in_order`), and
refusing an id it (or a rulebook it shares its ids with) already holds. A leaf module (standard
library only), so the settings package and the auditor can both import it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeVar


class Named(Protocol):
    """An entry of a rulebook: anything with a string ``id``."""

    @property
    def id(self) -> str: ...


E = TypeVar("E", bound=Named)
F = TypeVar("F", bound=Callable[..., Any])


class Rulebook(Mapping[str, E]):
    """Entries by id, in registration order; an id is registered once across ``shares_ids_with``.

    :param kind: what an entry is called in messages (``rule``, ``check``).
    :param shares_ids_with: rulebooks whose ids this one must not reuse (the audit report shows the
        rules and the checks side by side, one row per id).
    """

    def __init__(self, kind: str, *, shares_ids_with: Iterable[Rulebook[Any]] = ()) -> None:
        self.kind = kind
        self._entries: dict[str, E] = {}
        self._shared = tuple(shares_ids_with)

    def add(self, entry: E) -> E:
        """Register ``entry``; ``ValueError`` when its id is taken here or in a rulebook sharing ids."""
        if entry.id in self._entries:
            raise ValueError(f"{self.kind} {entry.id!r} registered twice: give it another id")
        for other in self._shared:
            if entry.id in other:
                raise ValueError(f"{self.kind} {entry.id!r}: the id is already a {other.kind}; give it another id")
        self._entries[entry.id] = entry
        return entry

    def add_in_order(self, defined: Mapping[str, E], order: Iterable[str], *, listed_in: str) -> None:
        """Register each entry of ``defined`` in the order of the ids in ``order``.

        ``RuntimeError`` (and nothing registered) when ``order`` leaves out an id of ``defined`` or
        names one it lacks; ``listed_in`` says where ``order`` is written, for the message.
        """
        ids = tuple(order)
        problems = [f"{i!r} is defined but not listed" for i in defined if i not in ids]
        problems += [f"{i!r} is listed but not defined" for i in ids if i not in defined]
        if problems:
            raise RuntimeError(f"{'; '.join(problems)}: list each {self.kind} id once in {listed_in}")
        for entry_id in ids:
            self.add(defined[entry_id])

    def decorator(self, make: Callable[[F], E]) -> Callable[[F], F]:
        """A decorator that registers ``make(fn)`` and hands ``fn`` back unchanged."""

        def register(fn: F) -> F:
            self.add(make(fn))
            return fn

        return register

    def __getitem__(self, entry_id: str) -> E:
        return self._entries[entry_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Rulebook({self.kind!r}, {list(self._entries)!r})"
