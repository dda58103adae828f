"""The connection's mirror of its session (:class:`SessionState`).

The registry holds the authoritative session record (:mod:`stickyws.registry.records`, which also
holds the commit and outbox rules); each connection keeps a :class:`SessionState` mirror that the
registry's atomic commit keeps in step, and that is used alone while the registry is down (and
written back when it returns). The mirror keeps fewer messages than the registry
(:data:`~stickyws.registry.records.OUTBOX_LIMIT`, :data:`~stickyws.registry.records.OUTBOX_MAX_BYTES`).
"""

from __future__ import annotations

from typing import Final

from stickyws.registry.records import (
    Commit,
    CommitResult,
    OutboxEntry,
    SessionRecord,
    apply_topic,
    extend_outbox,
)


class SessionState:
    """The connection's mirror of its session (a plain class: built per handshake, and a dataclass's
    generated ``__init__`` stays interpreted in the compiled build)."""

    def __init__(
        self,
        session_id: str,
        user_id: str,
        last_client_id: int = 0,
        last_server_seq: int = 0,
        subscriptions: set[str] | None = None,
        outbox: tuple[OutboxEntry, ...] = (),
        *,
        outbox_chars: int = -1,
        synced_seq: int = -1,
    ) -> None:
        self.session_id: Final = session_id
        self.user_id: Final = user_id
        self.last_client_id = last_client_id
        self.last_server_seq = last_server_seq
        self.subscriptions: set[str] = set() if subscriptions is None else subscriptions
        self.outbox = outbox
        #: True while local changes have not reached the registry (it was down).
        self.dirty = False
        #: ``outbox_chars`` of the record last adopted, valid while ``outbox`` is that record's tuple.
        self._chars = outbox_chars
        self._chars_of: tuple[OutboxEntry, ...] | None = outbox if outbox_chars >= 0 else None
        #: The last seq the registry confirmed (see :attr:`SessionRecord.synced_seq`).
        self.synced_seq = synced_seq
        #: The record last adopted by :meth:`sync`: :meth:`record` hands it back while the state still matches it.
        self._adopted: SessionRecord | None = None

    def __repr__(self) -> str:
        return (
            f"SessionState(session_id={self.session_id!r}, user_id={self.user_id!r}, "
            f"last_client_id={self.last_client_id}, last_server_seq={self.last_server_seq}, "
            f"subscriptions={sorted(self.subscriptions)!r}, outbox={len(self.outbox)} entries, dirty={self.dirty})"
        )

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
            outbox_chars=record.outbox_chars,
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
