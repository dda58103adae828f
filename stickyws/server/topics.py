"""Topics: which connections follow which topic, the fan-out of a publication, and recovery.

* :class:`TopicHub` holds the connections per topic and the server's one channel subscription per topic.
* :class:`Topics` writes a publication to every subscriber in offset order (the next one in line goes out
  as one shared frame), applies a committed ``subscribe``/``unsubscribe``, and recovers what a connection
  missed: from the client's ``since`` position on resume, after a gap in the offsets, after an outage
  (``unrecoverable`` when the registry no longer holds the range).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from stickyws import keys, protocol
from stickyws.registry.errors import RegistryUnavailable
from stickyws.registry.interfaces import Registry, TopicHistory
from stickyws.registry.wire import Publication
from stickyws.server.core_types import Connection, RegistryBacklog, SharedFrame, Spawn
from stickyws.server.delivery import TopicCursor
from stickyws.server.metrics import Metrics
from stickyws.server.outbound import GAP_WAIT_S, Outbound

log = logging.getLogger("stickyws.server")


class TopicHub:
    """The connections subscribed to each topic; the server subscribes a topic's channel while one is."""

    def __init__(self, *, registry: Registry, spawn: Spawn) -> None:
        self.registry = registry
        self._spawn = spawn
        #: Connections per topic (the server holds one channel subscription per topic in here).
        self.topic_conns: dict[str, set[Connection]] = {}

    async def add(self, conn: Connection, topics: Sequence[str]) -> None:
        """Count ``conn`` among the subscribers of ``topics``; subscribe the server's channel for
        topics it did not carry yet (returns once Redis confirmed them)."""
        new = []
        for topic in topics:
            conns = self.topic_conns.get(topic)
            if conns is None:
                conns = self.topic_conns[topic] = set()
                new.append(keys.topic_channel(topic))
            conns.add(conn)
        if new:
            with contextlib.suppress(RegistryUnavailable):
                await self.registry.subscribe(new)

    def remove(self, conn: Connection, topic: str) -> None:
        """Stop counting ``conn`` for ``topic``; the last one out unsubscribes the channel."""
        conns = self.topic_conns.get(topic)
        if conns is None:
            return
        conns.discard(conn)
        if not conns:
            del self.topic_conns[topic]
            self._spawn(self._unsubscribe_channel(topic))

    def forget(self, conn: Connection) -> None:
        """Drop every topic of ``conn`` (it closes or was replaced)."""
        for topic in list(conn.topics):
            self.remove(conn, topic)
        conn.topics.clear()

    async def _unsubscribe_channel(self, topic: str) -> None:
        if topic not in self.topic_conns:
            with contextlib.suppress(RegistryUnavailable):
                await self.registry.unsubscribe([keys.topic_channel(topic)])


class Topics:
    """Publications to subscribers, subscribe/unsubscribe, and recovery (see the module docstring)."""

    def __init__(
        self,
        *,
        registry: Registry,
        hub: TopicHub,
        outbound: Outbound,
        metrics: Metrics,
        retention_count: int,
        backlog: RegistryBacklog,
        spawn: Spawn,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.hub = hub
        self.metrics = metrics
        self.retention_count = retention_count
        self._backlog = backlog
        self._spawn = spawn
        self._wall_clock = wall_clock
        # Direct references for the fan-out loop.
        self._topic_conns = hub.topic_conns
        self._write = outbound.write
        self._write_shared = outbound.write_shared

    def on_publication(self, pub: Publication) -> None:
        """Write a publication (as the bus decoded it) to every connection following its topic."""
        conns = self._topic_conns.get(pub.topic)
        if not conns:
            return
        topic, offset_now, epoch_now = pub.topic, pub.offset, pub.epoch
        frame = protocol.publication_raw(topic, offset_now, epoch_now, pub.data)
        shared = SharedFrame(frame)
        write = self._write_shared
        delivered = 0
        for conn in list(conns):
            cursor = conn.topics.get(topic)
            if cursor is None:
                continue
            if (
                cursor.offset + 1 == offset_now
                and cursor.epoch == epoch_now
                and cursor.held is None
                and not cursor.recovering
            ):  # the common case: the next publication, nothing held (what TopicCursor.offer would pass on)
                cursor.offset = offset_now
                write(conn, shared)
                delivered += 1
                continue
            items, changed = cursor.offer(pub.offset, pub.epoch, pub.data)
            if changed:
                self._write(conn, protocol.unrecoverable(pub.topic, 0, pub.epoch))
                self.metrics.count("RecoveryFailures")
            for offset, data in items:
                if offset == pub.offset and data is pub.data:
                    self._write(conn, frame)
                else:
                    self._write(conn, protocol.publication_raw(pub.topic, offset, cursor.epoch, data))
                delivered += 1
            if cursor.missing() is not None:
                self._spawn(self.fill(conn, pub.topic))
        self.metrics.count("Deliveries", delivered)
        if pub.ts_ms and delivered:
            self.metrics.lag(self._wall_clock() * 1000 - pub.ts_ms)

    async def apply(self, conn: Connection, msg: protocol.ClientMessage, *, duplicate: bool) -> None:
        """Apply a committed subscribe/unsubscribe to the delivery state and acknowledge it."""
        topic = msg.topic
        if msg.type == "unsubscribe":
            conn.topics.pop(topic, None)
            self.hub.remove(conn, topic)
            self._write(conn, protocol.ack(msg.id, duplicate=duplicate))
            return
        if topic not in conn.topics or msg.offset is not None:
            since = {topic: (msg.offset, msg.epoch)} if msg.offset is not None else {}
            conn.topics.pop(topic, None)
            await self.open(conn, [topic], since, ack=(msg.id, duplicate))
            return
        cursor = conn.topics[topic]
        self._write(conn, protocol.subscribe_ack(msg.id, topic, cursor.offset, cursor.epoch, duplicate=duplicate))

    async def open(
        self,
        conn: Connection,
        topics: Sequence[str],
        since: Mapping[str, tuple[int, str]],
        ack: tuple[int, bool] | None = None,
    ) -> None:
        """Start delivering ``topics`` on ``conn``: from the client's ``since`` position where it has
        one (missed publications first, or ``unrecoverable``), else live from the topic's position now.

        ``ack`` (``(msg id, duplicate)``, one topic only) is written right before the first
        publication, carrying the position that publication follows.
        """
        for topic in topics:
            offset, epoch = since.get(topic, (0, ""))
            conn.topics[topic] = TopicCursor(offset, epoch, recovering=True)
        await self.hub.add(conn, topics)
        fresh = [t for t in topics if t not in since]
        try:
            if fresh:
                positions = await self.registry.topic_positions(topics=fresh)
                for topic, pos in zip(fresh, positions, strict=True):
                    self.finish_recovery(conn, topic, TopicHistory(pos, ()), live_from_now=True, ack=ack)
            for topic in topics:
                if topic in since:
                    offset, epoch = since[topic]
                    history = await self.registry.topic_since(
                        topic=topic, offset=offset, epoch=epoch, limit=self.retention_count
                    )
                    self.finish_recovery(conn, topic, history, ack=ack)
        except RegistryUnavailable:
            self._backlog.needs_reconcile = True  # the next successful beat re-checks every cursor
            if ack is not None:
                cursor = conn.topics.get(topics[0])
                offset, epoch = (cursor.offset, cursor.epoch) if cursor else (0, "")
                self._write(conn, protocol.subscribe_ack(ack[0], topics[0], offset, epoch, duplicate=ack[1]))

    def finish_recovery(
        self,
        conn: Connection,
        topic: str,
        history: TopicHistory,
        *,
        live_from_now: bool = False,
        ack: tuple[int, bool] | None = None,
    ) -> None:
        """Write what ``history`` (read from the registry) holds after ``conn``'s position on ``topic``, or
        ``unrecoverable`` when the registry no longer holds it, then what was held back meanwhile."""
        cursor = conn.topics.get(topic)
        if cursor is None or conn.closing:
            return
        pos = history.position
        if live_from_now:
            cursor.offset, cursor.epoch = pos.offset, pos.epoch
            items = cursor.recovered([], pos.offset, pos.epoch)
        elif history.publications is None:
            self._write(conn, protocol.unrecoverable(topic, pos.offset, pos.epoch))
            self.metrics.count("RecoveryFailures")
            cursor.held = {o: d for o, d in (cursor.held or {}).items() if o > pos.offset} or None
            cursor.epoch, cursor.offset = pos.epoch, pos.offset
            items = cursor.recovered([], pos.offset, pos.epoch)
        else:
            items = cursor.recovered([(p.offset, p.data) for p in history.publications], pos.offset, pos.epoch)
        if ack is not None:
            at = (items[0][0] - 1, cursor.epoch) if items else (cursor.offset, cursor.epoch)
            self._write(conn, protocol.subscribe_ack(ack[0], topic, at[0], at[1], duplicate=ack[1]))
        for offset, data in items:
            self._write(conn, protocol.publication_raw(topic, offset, cursor.epoch, data))
        if cursor.missing() is not None:
            self._spawn(self.fill(conn, topic))

    async def fill(self, conn: Connection, topic: str) -> None:
        """Read missed publications of ``topic`` after a short wait; an unreadable range is ``unrecoverable``."""
        await asyncio.sleep(GAP_WAIT_S)
        cursor = conn.topics.get(topic)
        if cursor is None or cursor.missing() is None or conn.closing:
            return
        cursor.recovering = True
        try:
            history = await self.registry.topic_since(
                topic=topic, offset=cursor.offset, epoch=cursor.epoch, limit=self.retention_count
            )
        except RegistryUnavailable:
            cursor.recovering = False
            self._backlog.needs_reconcile = True
            return
        self.finish_recovery(conn, topic, history)
