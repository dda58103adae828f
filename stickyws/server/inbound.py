"""Inbound: a client's frames, the handler, and the commit that makes a ``send`` exactly-once.

A ``send``: dedup against the session's last client id, the handler, then (``exactly_once``) one
registry commit that records the id and numbers the outputs, the outputs in seq order, the ack; with
``at_most_once`` no commit, unnumbered outputs. A ``subscribe``/``unsubscribe`` is committed in both
modes, then applied by :class:`stickyws.server.topics.Topics`.

This is the hot path (``bench/findings.md``, *The commit path, flattened*): :meth:`Inbound.on_text`
handles a ``send`` itself (one coroutine fewer per message) and reaches everything it calls through
attributes of its own (bound methods of the other parts, taken once here).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from stickyws import protocol
from stickyws.registry.errors import RegistryUnavailable, SessionReplaced
from stickyws.registry.interfaces import Registry
from stickyws.registry.records import Commit, CommitResult, OutboxLimits
from stickyws.server.core_types import Connection, RegistryBacklog, Spawn
from stickyws.server.handler import Handler, HandlerContext, HandlerError
from stickyws.server.metrics import Metrics
from stickyws.server.outbound import Outbound
from stickyws.server.topics import Topics
from stickyws.server.upkeep import Upkeep
from stickyws.settings.model import DeliverySettings, ServerSettings

log = logging.getLogger("stickyws.server")


class Inbound:
    """Client frames to handler outputs, commits and acks (see the module docstring)."""

    def __init__(
        self,
        *,
        server_id: str,
        registry: Registry,
        handler: Handler,
        server: ServerSettings,
        delivery: DeliverySettings,
        limits: OutboxLimits,
        metrics: Metrics,
        backlog: RegistryBacklog,
        outbound: Outbound,
        topics: Topics,
        upkeep: Upkeep,
        spawn: Spawn,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server_id = server_id
        self.registry = registry
        self.handler = handler
        self.sv = server
        self.limits = limits
        self.metrics = metrics
        self._backlog = backlog
        self._spawn = spawn
        self._clock = clock
        #: ``inbound_delivery=at_most_once``: sends are handled and acknowledged without a registry commit.
        self._at_most_once = delivery.inbound_delivery == "at_most_once"
        # Bound methods of the other parts, taken once: no lookup through another object per message.
        self._write = outbound.write
        self._offer = outbound.offer
        self._written_through = outbound.written_through
        self._apply_topic_op = topics.apply
        self._forget_topics = topics.hub.forget
        self._recheck_quietly = upkeep.recheck_quietly

    async def on_text(self, conn: Connection, text: str | bytes) -> None:
        """Handle one client text frame. A ``send``: dedup, handler, then (``exactly_once``) the commit,
        outputs in seq order, the ack; ``subscribe``/``unsubscribe``: :meth:`_on_topic_frame`. (The
        ``send`` is handled here rather than in a method of its own: one coroutine fewer per message.)"""
        self.metrics.counters["MessagesIn"] += 1
        try:
            parsed = protocol.parse_client_frame(text)
        except protocol.ProtocolError as exc:
            self._write(conn, protocol.error(exc.code, str(exc), exc.msg_id))
            return
        if type(parsed) is not tuple:
            assert isinstance(parsed, protocol.ClientMessage)
            await self._on_topic_frame(conn, parsed)
            return
        msg_id, data = parsed
        if msg_id > protocol.MAX_MESSAGE_ID:
            message = f"id must be at most {protocol.MAX_MESSAGE_ID}"
            self._write(conn, protocol.error(protocol.ERR_BAD_MESSAGE, message, msg_id))
            return
        session = conn.session
        if msg_id <= session.last_client_id:
            self._write(conn, protocol.ack(msg_id, duplicate=True))
            return
        ctx = HandlerContext(self.server_id, session.user_id, session.session_id, msg_id,
                             frozenset(session.subscriptions))  # fmt: skip
        try:
            outputs = tuple(map(protocol.dumps_value, await self.handler(ctx, data)))
        except HandlerError as refused:
            self._write(conn, protocol.error(refused.code, str(refused), msg_id))
            return
        except Exception:
            log.exception("handler failed on message %s of session %s", msg_id, session.session_id)
            self._write(conn, protocol.error(protocol.ERR_HANDLER, "the handler failed", msg_id))
            return
        if self._at_most_once:
            # No commit: the mirror remembers the id for this connection only; replies are unnumbered.
            session.last_client_id = msg_id
            for out in outputs:
                self._write(conn, protocol.message_unnumbered(out))
            self.metrics.counters["MessagesOut"] += len(outputs)
            self._write(conn, protocol.ack(msg_id))
            return
        try:
            result = await self._commit(conn, Commit(msg_id, outputs))
        except SessionReplaced:
            self._forget_topics(conn)
            await conn.close(protocol.CLOSE_TAKEN_OVER, "session replaced by a newer connection")
            return
        if result.duplicate:
            self._write(conn, protocol.ack(msg_id, duplicate=True))
            return
        first = result.first_seq
        for i, out in enumerate(outputs):
            self._offer(conn, first + i, out)
        if outputs and conn.cursor.sent < first + len(outputs) - 1:  # held behind a gap: ack once written
            await self._written_through(conn, first + len(outputs) - 1)
        self._write(conn, protocol.ack(msg_id))

    async def _on_topic_frame(self, conn: Connection, msg: protocol.ClientMessage) -> None:
        """A ``subscribe``/``unsubscribe``: dedup, commit (in both delivery modes), then the topic state."""
        if msg.id > protocol.MAX_MESSAGE_ID:
            text = f"id must be at most {protocol.MAX_MESSAGE_ID}"
            self._write(conn, protocol.error(protocol.ERR_BAD_MESSAGE, text, msg.id))
            return
        if conn.session.is_duplicate(msg.id):
            self._write(conn, protocol.ack(msg.id, duplicate=True))
            return
        commit = Commit(msg.id, (), "add" if msg.type == "subscribe" else "remove", msg.topic)
        try:
            result = await self._commit(conn, commit)
        except SessionReplaced:
            self._forget_topics(conn)
            await conn.close(protocol.CLOSE_TAKEN_OVER, "session replaced by a newer connection")
            return
        await self._apply_topic_op(conn, msg, duplicate=result.duplicate)

    async def _commit(self, conn: Connection, commit: Commit) -> CommitResult:
        """Commit ``commit`` for ``conn``'s session (first re-registering a session the registry missed while
        down); while the registry is away the mirror applies it and the heartbeat reconciles later."""
        session = conn.session
        try:
            if session.dirty:
                lost = await self.registry.reconcile(
                    self.server_id, [session.record()], routing_ttl_s=self.sv.routing_ttl_s,
                    session_ttl_s=self.sv.session_ttl_s,
                )  # fmt: skip
                session.dirty = False
                if lost:
                    self._spawn(conn.close(protocol.CLOSE_TAKEN_OVER, "taken over while registry was down"))
                else:  # pushes the registry took meanwhile were numbered after the local seqs: deliver them
                    self._spawn(self._recheck_quietly([conn]))
            result = await self.registry.commit(
                session.record(), commit, server_id=self.server_id, routing_ttl_s=self.sv.routing_ttl_s,
                session_ttl_s=self.sv.session_ttl_s, limits=self.limits,
            )  # fmt: skip
        except RegistryUnavailable:
            self._backlog.needs_reconcile = True
            return session.apply_local(commit)
        session.sync(result.record)
        conn.route_refreshed_at = self._clock()
        return result
