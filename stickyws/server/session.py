"""Resumable session state, pure: ids, duplicate detection, acknowledgements and server seq.

A session belongs to one user and survives reconnects to any server. The registry holds the
authoritative copy (``ws:{u:<user>}:session``); each connection keeps a :class:`SessionState` mirror that
the registry's atomic commit keeps in step, and that is used alone while the registry is down
(and written back when it returns).

Message ids are positive integers, strictly increasing per session (``stickyws.protocol``): an id at or
below ``last_client_id`` is a duplicate, acknowledged again but not handled again.

Server messages are kept too: the session's *outbox* holds the last ``outbox_max_messages`` messages
(at most ``outbox_max_bytes`` of payload) as ``(seq, payload JSON text)``, committed with the
message that produced them, or appended by a push to the user. A client that resumes with
``lastSeq`` gets every later one again, so a reply produced just before a connection died is not
lost either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import NamedTuple

#: Messages the connection's local mirror keeps (the registry keeps ``outbox_max_messages``): enough to
#: write recent output back after the registry lost its data, small enough for 10k idle connections.
OUTBOX_LIMIT = 64
#: Payload bytes the local mirror keeps (the newest message always stays).
OUTBOX_MAX_BYTES = 256 * 1024

#: ``(seq, payload JSON text)`` of one server message.
OutboxEntry = tuple[int, str]
_payload = itemgetter(1)


class SessionRecord(NamedTuple):
    """A snapshot of a session as the registry stores it.

    A named tuple (the registry builds one per commit; a frozen dataclass costs 3.7x as much to make).
    Equality and hashing leave out the two bookkeeping fields (``outbox_chars``, ``synced_seq``): two
    records of the same session state are equal however much of that bookkeeping each carries.
    """

    session_id: str
    user_id: str
    last_client_id: int = 0
    last_server_seq: int = 0
    subscriptions: tuple[str, ...] = ()
    outbox: tuple[OutboxEntry, ...] = ()
    #: Oldest seq the registry still keeps (a resuming client below it has lost ``out_first - 1 - lastSeq``).
    out_first: int = 1
    #: Characters in the outbox's payloads when known (``-1``: not counted), so that appending one message
    #: does not count the whole outbox again.
    outbox_chars: int = -1
    #: The last seq the registry confirmed to the mirror this record comes from (``-1``: not known);
    #: seqs above it were numbered locally while the registry was unreachable.
    synced_seq: int = -1

    def __eq__(self, other: object) -> bool:
        return type(other) is SessionRecord and self[:7] == other[:7]

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self[:7])

    def __repr__(self) -> str:
        return (
            f"SessionRecord(session_id={self.session_id!r}, user_id={self.user_id!r}, "
            f"last_client_id={self.last_client_id!r}, last_server_seq={self.last_server_seq!r}, "
            f"subscriptions={self.subscriptions!r}, outbox={self.outbox!r}, out_first={self.out_first!r})"
        )


@dataclass(frozen=True)
class OutboxLimits:
    """How much of a session's output is kept for replay (settings ``outbox_max_messages``/``_bytes``)."""

    max_messages: int = 1000
    max_bytes: int = 1024 * 1024


#: The settings' defaults (``outbox_max_messages``, ``outbox_max_bytes``).
DEFAULT_OUTBOX_LIMITS = OutboxLimits()


class Commit(NamedTuple):
    """What handling one client message changes: server messages (``payloads``, JSON texts) and a topic.

    ``topic_op`` is ``""`` (none), ``"add"`` or ``"remove"``. A named tuple, not a dataclass: one is made
    per client message (a frozen dataclass costs 3x as much to make).
    """

    msg_id: int
    payloads: tuple[str, ...] = ()
    topic_op: str = ""
    topic: str = ""

    @property
    def outputs(self) -> int:
        """How many server messages (seqs) this commit uses."""
        return len(self.payloads)


class CommitResult(NamedTuple):
    """The registry's answer to a :class:`Commit`: ``first_seq`` is the seq of the first output (a named
    tuple for the same reason as :class:`Commit`)."""

    duplicate: bool
    first_seq: int
    record: SessionRecord


@dataclass(slots=True)
class SessionState:
    """The connection's mirror of its session."""

    session_id: str
    user_id: str
    last_client_id: int = 0
    last_server_seq: int = 0
    subscriptions: set[str] = field(default_factory=set)
    outbox: tuple[OutboxEntry, ...] = ()
    #: True while local changes have not reached the registry (it was down).
    dirty: bool = False
    #: ``outbox_chars`` of the record last adopted, valid while ``outbox`` is that record's tuple.
    _chars: int = -1
    _chars_of: tuple[OutboxEntry, ...] | None = None
    #: The last seq the registry confirmed (see :attr:`SessionRecord.synced_seq`).
    synced_seq: int = -1
    #: The record last adopted by :meth:`sync`: :meth:`record` hands it back while the state still matches it.
    _adopted: SessionRecord | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_record(cls, record: SessionRecord) -> SessionState:
        """A mirror of ``record``."""
        return cls(
            record.session_id,
            record.user_id,
            record.last_client_id,
            record.last_server_seq,
            set(record.subscriptions),
            record.outbox,
            _chars=record.outbox_chars,
            _chars_of=record.outbox,
            synced_seq=record.last_server_seq,
        )

    def record(self) -> SessionRecord:
        """The state as a registry record (subscriptions sorted). Right after :meth:`sync`, while nothing
        changed, that same record (a commit per client message builds none)."""
        r = self._adopted
        if (
            r is not None
            and r.outbox is self.outbox
            and r.last_client_id == self.last_client_id
            and r.last_server_seq == self.last_server_seq
            and r.synced_seq == self.synced_seq
            and len(r.subscriptions) == len(self.subscriptions)
            and r.session_id == self.session_id
        ):  # subscriptions change only with a commit, which moves last_client_id
            return r
        return SessionRecord(
            self.session_id,
            self.user_id,
            self.last_client_id,
            self.last_server_seq,
            tuple(sorted(self.subscriptions)) if self.subscriptions else (),
            self.outbox,
            outbox_chars=self._chars if self._chars_of is self.outbox else -1,
            synced_seq=self.synced_seq,
        )

    def is_duplicate(self, msg_id: int) -> bool:
        """Whether ``msg_id`` was already handled."""
        return msg_id <= self.last_client_id

    def apply_local(self, commit: Commit) -> CommitResult:
        """Apply ``commit`` here only (registry down); same contract as the registry's commit."""
        if self.is_duplicate(commit.msg_id):
            return CommitResult(True, self.last_server_seq + 1, self.record())
        first = self.last_server_seq + 1
        self.last_client_id = commit.msg_id
        self.last_server_seq += commit.outputs
        chars = self._chars if self._chars_of is self.outbox else -1
        self.outbox, self._chars = extend_outbox(self.outbox, first, commit.payloads, chars=chars)
        self._chars_of = self.outbox
        apply_topic(self.subscriptions, commit.topic_op, commit.topic)
        self.dirty = True
        return CommitResult(False, first, self.record())

    def sync(self, record: SessionRecord) -> None:
        """Adopt the registry's authoritative state after a commit."""
        self.last_client_id = record.last_client_id
        self.last_server_seq = record.last_server_seq
        subs = record.subscriptions
        if len(subs) != len(self.subscriptions) or not self.subscriptions.issuperset(subs):
            self.subscriptions = set(subs)
        self.outbox = record.outbox
        self._chars, self._chars_of = record.outbox_chars, record.outbox
        self.synced_seq = record.last_server_seq
        self.dirty = False
        if record.synced_seq == record.last_server_seq and record.outbox_chars >= 0:
            self._adopted = record

    def replay_after(self, last_seq: int) -> list[OutboxEntry]:
        """Outbox entries with a seq above ``last_seq`` (what a resuming client has not seen)."""
        return [entry for entry in self.outbox if entry[0] > last_seq]


def append_outbox(
    outbox: Sequence[OutboxEntry],
    first_seq: int,
    payloads: Sequence[str],
    *,
    limit: int = OUTBOX_LIMIT,
    max_bytes: int = OUTBOX_MAX_BYTES,
) -> tuple[OutboxEntry, ...]:
    """``outbox`` plus ``payloads`` numbered from ``first_seq``, trimmed oldest first to ``limit``
    entries and ``max_bytes`` of payload (the newest entry always stays). The Redis commit script
    trims the same way."""
    return extend_outbox(outbox, first_seq, payloads, limit=limit, max_bytes=max_bytes)[0]


def extend_outbox(
    outbox: Sequence[OutboxEntry],
    first_seq: int,
    payloads: Sequence[str],
    *,
    chars: int = -1,
    limit: int = OUTBOX_LIMIT,
    max_bytes: int = OUTBOX_MAX_BYTES,
) -> tuple[tuple[OutboxEntry, ...], int]:
    """:func:`append_outbox`, and the characters in the result's payloads. ``chars``: those of ``outbox``
    when known (``-1``: counted here), so that a commit costs the same whatever the outbox holds."""
    old = outbox if type(outbox) is tuple else tuple(outbox)
    if len(payloads) == 1 and chars >= 0 and limit > 0:  # the usual commit: one reply, the count known
        payload = payloads[0]
        if len(old) < limit:
            entries, chars = (*old, (first_seq, payload)), chars + len(payload)
        elif len(old) == limit:  # full: the oldest leaves
            entries, chars = (*old[1:], (first_seq, payload)), chars + len(payload) - len(old[0][1])
        else:
            entries = (*old[len(old) - limit + 1 :], (first_seq, payload))
            chars += len(payload) - sum(map(len, map(_payload, old[: len(old) - limit + 1])))
        if chars * 4 <= max_bytes:
            return entries, chars
        return _trim_bytes(entries, max_bytes)
    if chars < 0:
        chars = sum(map(len, map(_payload, old)))
    new = tuple(zip(range(first_seq, first_seq + len(payloads)), payloads, strict=True))
    chars += sum(map(len, payloads))
    drop = len(old) + len(new) - limit
    if drop <= 0:
        entries = old + new
    elif drop <= len(old):
        chars -= sum(map(len, map(_payload, old[:drop])))
        entries = old[drop:] + new
    else:
        entries = new[drop - len(old) :]
        chars = sum(map(len, payloads[drop - len(old) :]))
    if chars * 4 <= max_bytes:  # UTF-8 needs at most 4 bytes a character
        return entries, chars
    return _trim_bytes(entries, max_bytes)


def _trim_bytes(entries: tuple[OutboxEntry, ...], max_bytes: int) -> tuple[tuple[OutboxEntry, ...], int]:
    """``entries`` without their oldest while over ``max_bytes`` of UTF-8 (the newest always stays)."""
    kept = list(entries)
    size = sum(len(p.encode()) for _, p in kept)
    while len(kept) > 1 and size > max_bytes:
        size -= len(kept.pop(0)[1].encode())
    return tuple(kept), sum(map(len, map(_payload, kept)))


def apply_topic(subscriptions: set[str], op: str, topic: str) -> None:
    """Add or remove ``topic`` (``op`` ``"add"``/``"remove"``; ``""`` does nothing)."""
    if op == "add":
        subscriptions.add(topic)
    elif op == "remove":
        subscriptions.discard(topic)
    elif op:
        raise ValueError(f"unknown topic op {op!r}")
