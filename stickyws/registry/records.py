"""Session records and the pure rules that change them: commit, outbox append and trim, topic ops.

A session belongs to one user and survives reconnects to any server. The registry holds the
authoritative copy (``ws:{u:<user>}:session``) as a :class:`SessionRecord`; each connection keeps a
mirror (:class:`stickyws.server.session.SessionState`) that the registry's atomic commit keeps in step.

Message ids are positive integers, strictly increasing per session (``stickyws.protocol``): an id at or
below ``last_client_id`` is a duplicate, acknowledged again but not handled again.

Server messages are kept too: the session's *outbox* holds the last ``outbox_max_messages`` messages
(at most ``outbox_max_bytes`` of payload) as ``(seq, payload JSON text)``, committed with the
message that produced them, or appended by a push to the user. A client that resumes with
``lastSeq`` gets every later one again, so a reply produced just before a connection died is not
lost either.

The outbox rule (:func:`extend_outbox`): append, then drop the oldest while there are more than the
limit's messages or more than its bytes of UTF-8 payload, the newest always staying. The in-memory
registry and the connection mirror apply it here; the Redis scripts apply the same rule in Lua
(``scripts/outbox.lua``), and ``tests/registry/test_outbox_rule.py`` runs both on the same inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


def apply_commit(current: SessionRecord, commit: Commit, limits: OutboxLimits) -> CommitResult:
    """The registry's commit of ``commit`` on ``current`` (the stored record): a duplicate id changes
    nothing; otherwise the id is taken, the payloads get the next seqs and join the outbox (trimmed by
    ``limits``), and the topic op applies."""
    if commit.msg_id <= current.last_client_id:
        return CommitResult(True, current.last_server_seq + 1, current)
    subs = set(current.subscriptions)
    apply_topic(subs, commit.topic_op, commit.topic)
    outbox = append_outbox(
        current.outbox, current.last_server_seq + 1, commit.payloads, limit=limits.max_messages,
        max_bytes=limits.max_bytes,
    )  # fmt: skip
    last_seq = current.last_server_seq + commit.outputs
    new = SessionRecord(
        current.session_id,
        current.user_id,
        commit.msg_id,
        last_seq,
        tuple(sorted(subs)),
        outbox,
        outbox[0][0] if outbox else last_seq + 1,
    )
    return CommitResult(False, current.last_server_seq + 1, new)


def append_push(current: SessionRecord, seq: int, payload: str, limits: OutboxLimits) -> SessionRecord:
    """``current`` with a push's ``payload`` appended as message ``seq`` (trimmed by ``limits``)."""
    outbox = append_outbox(current.outbox, seq, (payload,), limit=limits.max_messages, max_bytes=limits.max_bytes)
    return current._replace(last_server_seq=seq, outbox=outbox, out_first=outbox[0][0])
