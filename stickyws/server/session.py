"""Resumable session state, pure: ids, duplicate detection, acknowledgements and server seq.

A session belongs to one user and survives reconnects to any server. The registry holds the
authoritative copy (``ws:session:{id}``); each connection keeps a :class:`SessionState` mirror that
the registry's atomic commit keeps in step, and that is used alone while the registry is down
(and written back when it returns).

Message ids are positive integers, strictly increasing per session (``stickyws.protocol``): an id at or
below ``last_client_id`` is a duplicate, acknowledged again but not handled again.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SessionRecord:
    """A snapshot of a session as the registry stores it."""

    session_id: str
    user_id: str
    last_client_id: int = 0
    last_server_seq: int = 0
    subscriptions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Commit:
    """What handling one client message changes: ``outputs`` server messages and a topic change.

    ``topic_op`` is ``""`` (none), ``"add"`` or ``"remove"``.
    """

    msg_id: int
    outputs: int = 0
    topic_op: str = ""
    topic: str = ""


@dataclass(frozen=True)
class CommitResult:
    """The registry's answer to a :class:`Commit`: ``first_seq`` is the seq of the first output."""

    duplicate: bool
    first_seq: int
    record: SessionRecord


@dataclass
class SessionState:
    """The connection's mirror of its session."""

    session_id: str
    user_id: str
    last_client_id: int = 0
    last_server_seq: int = 0
    subscriptions: set[str] = field(default_factory=set)
    #: True while local changes have not reached the registry (it was down).
    dirty: bool = False

    @classmethod
    def from_record(cls, record: SessionRecord) -> SessionState:
        """A mirror of ``record``."""
        return cls(
            record.session_id,
            record.user_id,
            record.last_client_id,
            record.last_server_seq,
            set(record.subscriptions),
        )

    def record(self) -> SessionRecord:
        """The state as a registry record (subscriptions sorted)."""
        return SessionRecord(
            self.session_id,
            self.user_id,
            self.last_client_id,
            self.last_server_seq,
            tuple(sorted(self.subscriptions)),
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
        apply_topic(self.subscriptions, commit.topic_op, commit.topic)
        self.dirty = True
        return CommitResult(False, first, self.record())

    def sync(self, record: SessionRecord) -> None:
        """Adopt the registry's authoritative state after a commit."""
        self.last_client_id = record.last_client_id
        self.last_server_seq = record.last_server_seq
        self.subscriptions = set(record.subscriptions)
        self.dirty = False


def apply_topic(subscriptions: set[str], op: str, topic: str) -> None:
    """Add or remove ``topic`` (``op`` ``"add"``/``"remove"``; ``""`` does nothing)."""
    if op == "add":
        subscriptions.add(topic)
    elif op == "remove":
        subscriptions.discard(topic)
    elif op:
        raise ValueError(f"unknown topic op {op!r}")
