"""Writing to connections: frames, slow consumers, a session's messages in seq order, and gap fill.

:meth:`Outbound.write` queues a frame; a connection whose unsent bytes pass ``max_output_bytes`` is a
slow consumer, closed with 1013 (its client resumes from its seq and offsets).
:meth:`Outbound.offer` writes session message ``seq`` in order and holds a later one behind a gap;
a held message starts a fill: after :data:`GAP_WAIT_S` (the missing one is usually on its way by another
path) the missing range is read from the registry and written, or a ``gap`` frame for messages the
registry no longer holds. The decisions (:meth:`Outbound.slow`, :meth:`Outbound.missing`,
:meth:`Outbound.apply_range`) are plain methods; only :meth:`Outbound.fill` and
:meth:`Outbound.written_through` wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping

from stickyws import protocol
from stickyws.registry.errors import NotYetReplicated, RegistryUnavailable
from stickyws.registry.interfaces import Registry
from stickyws.registry.records import append_outbox
from stickyws.registry.wire import UserPush
from stickyws.server.core_types import Connection, RegistryBacklog, SharedFrame, Spawn
from stickyws.server.metrics import Metrics

#: How long an early message waits for the one before it (it may still be on its way by another path)
#: before the server reads the missing range from the registry.
GAP_WAIT_S = 0.05
#: Pause between catch-up reads of messages that no replica was confirmed to hold yet (each read also waits
#: up to ``ack_wait_timeout_ms`` for the replicas).
REPLICATION_RETRY_S = 0.2
#: How long an ack waits for its outputs to be written when they wait behind a gap.
ACK_WAIT_S = 2.0


class Outbound:
    """Writes frames and session messages to connections (see the module docstring).

    ``forget_topics`` drops a connection's topic subscriptions (a slow consumer's); ``wall_clock``
    (seconds since the epoch) dates a push's delivery lag against the publisher's timestamp.
    """

    def __init__(
        self,
        *,
        server_id: str,
        registry: Registry,
        metrics: Metrics,
        max_output_bytes: int,
        backlog: RegistryBacklog,
        spawn: Spawn,
        forget_topics: Callable[[Connection], None],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.server_id = server_id
        self.registry = registry
        self.metrics = metrics
        self.max_output_bytes = max_output_bytes
        self._backlog = backlog
        self._spawn = spawn
        self._forget_topics = forget_topics
        self._wall_clock = wall_clock

    # ------------------------------------------------------------------ frames

    def write(self, conn: Connection, text: str) -> None:
        """Queue ``text`` on ``conn``; past ``max_output_bytes`` unsent the connection is a slow
        consumer: it is closed with 1013 and its client resumes from its seq and offsets."""
        if conn.closing:
            return
        try:
            unsent = conn.transport.write(text)
        except (ConnectionError, RuntimeError):
            return
        if unsent > self.max_output_bytes:
            self.slow(conn, unsent)

    def write_shared(self, conn: Connection, frame: SharedFrame) -> None:
        """:meth:`write` of a frame that goes to many connections (encoded once)."""
        if conn.closing:
            return
        try:
            unsent = conn.transport.write_shared(frame)
        except (ConnectionError, RuntimeError):
            return
        if unsent > self.max_output_bytes:
            self.slow(conn, unsent)

    def slow(self, conn: Connection, unsent: int) -> None:
        """Close ``conn`` with 1013: it holds ``unsent`` bytes, more than ``max_output_bytes``."""
        self.metrics.count("SlowConsumerCloses")
        self.metrics.audit("slow_consumer", user=conn.user_id, server=self.server_id, unsent=unsent)
        self._forget_topics(conn)
        self._spawn(conn.close(protocol.CLOSE_TRY_AGAIN_LATER, "slow consumer"))

    # ------------------------------------------------------------------ session messages

    def offer(self, conn: Connection, seq: int, text: str) -> None:
        """Write session message ``seq`` (JSON payload ``text``) in order; hold it behind a gap."""
        for item_seq, item in conn.cursor.offer(seq, text):
            self.write(conn, protocol.message_raw(item_seq, item))
            self.metrics.count("MessagesOut")
        if conn.cursor.waiting and not conn.filling:
            conn.filling = True
            self._spawn(self.fill(conn))

    def push(self, conn: Connection, push: UserPush) -> None:
        """Deliver a push the registry numbered for ``conn``'s session (one of another session is dropped)."""
        if push.session_id != conn.session.session_id:
            return
        s = conn.session
        if push.seq > s.last_server_seq:
            s.last_server_seq = push.seq
            s.synced_seq = push.seq  # from the registry: confirmed
            s.outbox = append_outbox(s.outbox, push.seq, (push.data,))
        self.metrics.count("PushesDelivered")
        self.offer(conn, push.seq, push.data)
        if push.ts_ms:
            self.metrics.lag(self._wall_clock() * 1000 - push.ts_ms)

    def skip_missing(self, conn: Connection, through: int) -> None:
        """After a replay, seqs up to ``through`` that the registry no longer holds are a gap."""
        if conn.cursor.sent < through:
            self.write(conn, protocol.gap(conn.cursor.sent + 1, through))
            self.metrics.count("ReplayGaps")
            for item_seq, item in conn.cursor.skip(through):
                self.write(conn, protocol.message_raw(item_seq, item))

    def fill_later(self, conn: Connection, through: int) -> None:
        """Read seqs up to ``through`` again in the background (a read no replica confirmed yet)."""
        conn.fill_through = max(conn.fill_through, through)
        if not conn.filling:
            conn.filling = True
            self._spawn(self.fill(conn, REPLICATION_RETRY_S))

    @staticmethod
    def missing(conn: Connection) -> tuple[int, int, bool] | None:
        """``(first, last, proven)``: the seqs to read next, or ``None``. ``proven``: a later message is held,
        so every seq before it was numbered (a missing one is gone); else they run to ``fill_through``."""
        missing = conn.cursor.missing()
        if missing is not None:
            return missing[0], missing[1], True
        if conn.fill_through > conn.cursor.sent:
            return conn.cursor.sent + 1, conn.fill_through, False
        return None

    async def fill(self, conn: Connection, wait_s: float = GAP_WAIT_S) -> None:
        """Read the messages a connection is missing from the registry (after ``wait_s``, since they are
        usually on their way by another path) and write them, or a ``gap`` for lost ones. A read that no
        replica confirmed yet is made again (:data:`REPLICATION_RETRY_S`), never a ``gap``."""
        try:
            await asyncio.sleep(wait_s)
            while not conn.closing and (missing := self.missing(conn)) is not None:
                try:
                    await self.read_missing(conn, *missing)
                except NotYetReplicated:
                    await asyncio.sleep(REPLICATION_RETRY_S)
                except RegistryUnavailable:
                    self._backlog.needs_reconcile = True  # the next beat reconciles and reads again (recheck)
                    return
        finally:
            conn.filling = False

    async def read_missing(self, conn: Connection, first: int, last: int, proven: bool) -> None:
        """One catch-up read of seqs ``first..last`` (raises :class:`NotYetReplicated` and
        :class:`RegistryUnavailable`). Unless ``proven``, seqs above the session's ``lastServerSeq`` are not
        numbered (any more, after a failover): they come by push, they are no ``gap``."""
        read = await self.registry.read_outbox(
            user_id=conn.user_id, session_id=conn.session.session_id, first_seq=first, last_seq=last
        )
        if not proven and read.last_seq is not None and read.last_seq < last:
            last = read.last_seq
            conn.fill_through = min(conn.fill_through, last)
        self.apply_range(conn, first, last, read.entries)

    def apply_range(self, conn: Connection, first: int, last: int, found: Mapping[int, str]) -> None:
        """Write seqs ``first..last`` read from the registry; a run of seqs it no longer has is one ``gap``."""
        seq = first
        while seq <= last:
            if seq in found:
                self._offer_now(conn, seq, found[seq])
                seq += 1
                continue
            end = seq
            while end + 1 <= last and end + 1 not in found:
                end += 1
            if conn.cursor.sent < end:
                self.write(conn, protocol.gap(max(seq, conn.cursor.sent + 1), end))
                self.metrics.count("ReplayGaps")
                for item_seq, item in conn.cursor.skip(end):
                    self.write(conn, protocol.message_raw(item_seq, item))
            seq = end + 1

    def _offer_now(self, conn: Connection, seq: int, text: str) -> None:
        for item_seq, item in conn.cursor.offer(seq, text):
            self.write(conn, protocol.message_raw(item_seq, item))
            self.metrics.count("MessagesOut")

    async def written_through(self, conn: Connection, seq: int) -> None:
        """Wait (bounded by :data:`ACK_WAIT_S`) until session message ``seq`` has been written (it may wait
        behind a gap)."""
        if conn.cursor.sent >= seq:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ACK_WAIT_S):
                while conn.cursor.sent < seq and not conn.closing:  # noqa: ASYNC110 - bounded, rare
                    await asyncio.sleep(0.01)
