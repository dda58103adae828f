"""Registry upkeep: the heartbeat, reconciliation after an outage, and re-reading what was missed.

Every ``heartbeat_interval_s`` :meth:`Upkeep.beat` writes the server's liveness, works off the
:class:`~stickyws.server.core_types.RegistryBacklog` (re-registers every connection and session, releases
the routes a failed release left, re-reads what the connections missed: :meth:`Upkeep.recheck`),
refreshes the routes of idle connections before their TTLs run out, and looks for a drain notice.
The decisions take the time they need (:meth:`Upkeep.idle`, :func:`heartbeat_body`); the clock is
injectable (``clock``, monotonic seconds).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from stickyws import keys, protocol
from stickyws.registry.errors import NotYetReplicated, RegistryUnavailable
from stickyws.registry.interfaces import Registry
from stickyws.server.core_types import Connection, RegistryBacklog, Spawn, reraise_if_cancelling
from stickyws.server.metrics import Metrics
from stickyws.server.outbound import Outbound
from stickyws.server.topics import Topics
from stickyws.settings.model import ServerSettings

log = logging.getLogger("stickyws.server")

#: Share of the shorter of ``routing_ttl_s`` and ``session_ttl_s`` after which an idle connection's route
#: and session are refreshed by the heartbeat (well before either runs out).
REFRESH_SHARE = 1 / 3


def heartbeat_body(server_id: str, connections: int, status: str, ts_ms: int, revision: str = "") -> str:
    """The heartbeat value: ``{"serverId", "connections", "status", "ts", "revision"}`` (compact JSON; the
    revision field is :data:`stickyws.keys.HEARTBEAT_REVISION`, "" for a server without one)."""
    body = {"serverId": server_id, "connections": connections, "status": status, "ts": ts_ms,
            keys.HEARTBEAT_REVISION: revision}  # fmt: skip
    return json.dumps(body, separators=(",", ":"))


class Upkeep:
    """The heartbeat and what it keeps right in the registry (see the module docstring).

    ``status`` names the heartbeat's status (``serving`` or ``draining``); ``on_drain_notice`` is called
    with ``(source, reason)`` of a stored drain notice. Every heartbeat carries the ``revision`` setting.
    """

    def __init__(
        self,
        *,
        server_id: str,
        registry: Registry,
        server: ServerSettings,
        metrics: Metrics,
        connections: Mapping[str, Connection],
        by_user: Mapping[str, Connection],
        backlog: RegistryBacklog,
        outbound: Outbound,
        topics: Topics,
        spawn: Spawn,
        status: Callable[[], str],
        on_drain_notice: Callable[[str, str], None],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.server_id = server_id
        self.registry = registry
        self.server = server
        self.metrics = metrics
        self.connections = connections
        self.by_user = by_user
        self.backlog = backlog
        self.outbound = outbound
        self.topics = topics
        self._spawn = spawn
        self._status = status
        self._on_drain_notice = on_drain_notice
        self._clock = clock
        self._wall_clock = wall_clock

    # ------------------------------------------------------------------ decisions

    def idle(self, conns: Iterable[Connection], now: float) -> list[Connection]:
        """The connections whose route was last refreshed more than :data:`REFRESH_SHARE` of the shorter TTL
        before ``now`` (monotonic seconds): the heartbeat refreshes them."""
        stale = now - min(self.server.routing_ttl_s, self.server.session_ttl_s) * REFRESH_SHARE
        return [c for c in conns if c.route_refreshed_at < stale]

    def body(self, status: str | None = None) -> str:
        """This server's heartbeat value now (``status`` defaults to serving or draining)."""
        ts_ms = int(self._wall_clock() * 1000)
        return heartbeat_body(
            self.server_id, len(self.connections), status or self._status(), ts_ms, self.server.revision
        )

    # ------------------------------------------------------------------ the registry

    async def write_heartbeat(self, status: str | None = None, ttl_s: int | None = None) -> None:
        """Write the heartbeat once (raises :class:`RegistryUnavailable`)."""
        ttl = self.server.heartbeat_ttl_s if ttl_s is None else ttl_s
        await self.registry.heartbeat(self.server_id, self.body(status), ttl)

    async def loop(self) -> None:
        """:meth:`beat` every ``heartbeat_interval_s`` until cancelled."""
        while True:
            try:
                await self.beat()
            except Exception:  # a registry reply we did not expect must not stop the heartbeat
                reraise_if_cancelling()
                log.exception("heartbeat failed; retrying at the next beat")
                self.backlog.needs_reconcile = True
            await asyncio.sleep(self.server.heartbeat_interval_s)

    async def beat(self) -> None:
        """One heartbeat: write liveness, reconcile after an outage, refresh idle routes, look for a
        drain notice, flush metrics. Never raises for a registry outage."""
        try:
            await self.write_heartbeat()
            if self.backlog.needs_reconcile:
                await self.reconcile()
                await self.recheck()
            else:
                # Idle connections: refresh route and session well before either TTL runs out.
                await self._reconcile(self.idle(self.connections.values(), self._clock()))
            notice = await self.registry.drain_notice(self.server_id)
            if notice is not None:
                self._on_drain_notice(notice.source, notice.reason)
        except RegistryUnavailable:
            self.backlog.needs_reconcile = True
        self.metrics.flush(len(self.connections))

    async def reconcile(self) -> None:
        """Re-register every live connection and session, and finish releases missed while down."""
        backlog = self.backlog
        backlog.needs_reconcile = False
        try:
            await self._reconcile(list(self.connections.values()))
            for user_id in list(backlog.pending_releases):
                if user_id not in self.by_user:
                    await self.registry.release(user_id, self.server_id)
                backlog.pending_releases.discard(user_id)
        except RegistryUnavailable:
            backlog.needs_reconcile = True
            raise
        self.metrics.audit("reconciled", server=self.server_id, connections=len(self.connections))

    async def _reconcile(self, conns: Sequence[Connection]) -> None:
        if not conns:
            return
        lost = set(
            await self.registry.reconcile(
                self.server_id, [c.session.record() for c in conns], routing_ttl_s=self.server.routing_ttl_s,
                session_ttl_s=self.server.session_ttl_s,
            )
        )  # fmt: skip
        now = self._clock()
        for conn in conns:
            conn.session.dirty = False
            conn.route_refreshed_at = now
            if conn.user_id in lost:
                self.metrics.audit("route", decision="lost", reason="taken_over_while_down", user=conn.user_id,
                                   server=self.server_id, remote=conn.remote)  # fmt: skip
                self._spawn(conn.close(protocol.CLOSE_TAKEN_OVER, "taken over while registry was down"))

    async def release(self, user_id: str) -> None:
        """Release ``user_id``'s route; while the registry is away, remember it for the next reconcile."""
        try:
            await self.registry.release(user_id, self.server_id)
            self.backlog.pending_releases.discard(user_id)
        except RegistryUnavailable:
            self.backlog.needs_reconcile = True
            self.backlog.pending_releases.add(user_id)

    # ------------------------------------------------------------------ re-reading what was missed

    async def recheck(self, conns: Sequence[Connection] | None = None) -> None:
        """After the registry or its pub/sub was away: write every message and publication that the
        connections missed meanwhile (pushes and publications announced while nobody listened).

        One pipelined read of every session's seq and every topic's position; a further read only
        for the connections that are behind.
        """
        conns = [c for c in (self.connections.values() if conns is None else conns) if not c.closing]
        if not conns:
            return
        seqs = await self.registry.session_seqs(sessions=[(c.user_id, c.session.session_id) for c in conns])
        behind = [(c, seq) for c, seq in zip(conns, seqs, strict=True) if seq is not None and seq > c.cursor.sent]
        # All at once: on each primary the reads leave in one write and share one WAIT.
        outcomes = await asyncio.gather(*(self._recheck_one(c, seq) for c, seq in behind), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        topics = sorted({t for c in conns for t in c.topics})
        if not topics:
            return
        positions = dict(zip(topics, await self.registry.topic_positions(topics=topics), strict=True))
        for conn in conns:
            for topic, cursor in list(conn.topics.items()):
                pos = positions[topic]
                if conn.closing or (not cursor.recovering and (cursor.offset, cursor.epoch) == (pos.offset, pos.epoch)):
                    continue
                cursor.recovering = True
                history = await self.registry.topic_since(
                    topic=topic, offset=cursor.offset, epoch=cursor.epoch, limit=self.topics.retention_count
                )
                self.topics.finish_recovery(conn, topic, history)

    async def _recheck_one(self, conn: Connection, seq: int) -> None:
        """Read what ``conn`` lacks up to ``seq``; a read no replica confirmed yet is made again later."""
        if conn.closing:
            return
        if conn.filling:  # a read is running: it takes this range too
            conn.fill_through = max(conn.fill_through, seq)
            return
        try:
            await self.outbound.read_missing(conn, conn.cursor.sent + 1, seq, False)
        except NotYetReplicated:
            self.outbound.fill_later(conn, seq)

    async def recheck_quietly(self, conns: Sequence[Connection] | None = None) -> None:
        """:meth:`recheck` in the background: a failure leaves it to the next beat."""
        try:
            await self.recheck(conns)
        except RegistryUnavailable:
            self.backlog.needs_reconcile = True
        except Exception:
            reraise_if_cancelling()
            log.exception("re-checking deliveries failed; retrying at the next beat")
            self.backlog.needs_reconcile = True
