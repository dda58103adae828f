"""Named checks in registration order, each id registered once: the shape of every rule registry.

The settings model's rules (:data:`stickyws.settings.RULES`) and the auditor's deployment checks
(:data:`stickyws.audit.checks.CHECKS`) are both a :class:`Rulebook`: a read-only mapping from id to
entry that iterates in registration order, filled by a decorator (:meth:`Rulebook.decorator`) and
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
