"""Admission: the handshake's decision, the welcome and replay of an opened connection, its end.

* :meth:`Admissions.admit` checks a handshake (state, capacity, origin, token, resume token: the pure
  :meth:`Admissions.checks`), sends on a client that avoids this server's revision while another
  revision is live (:mod:`stickyws.server.send_on`), else claims the user's route and session in the
  registry.
* :meth:`Admissions.open` registers the upgraded connection and welcomes it: ``connected``, then what the
  client missed (the outbox after its ``lastSeq`` or a ``gap``, pushes that came during the handshake,
  each topic from its ``since`` position), then live traffic.
* :meth:`Admissions.closed` forgets a connection and releases its route unless a newer one of the user
  is here.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from stickyws import keys, protocol
from stickyws.registry.errors import RegistryUnavailable
from stickyws.registry.interfaces import Registry
from stickyws.registry.records import OUTBOX_LIMIT, OutboxLimits, SessionRecord
from stickyws.registry.wire import UserPush, takeover_body
from stickyws.server.auth import AuthError, TokenVerifier, extract_resume, extract_token, new_session_id, origin_allowed
from stickyws.server.core_types import (
    RETRY_AFTER_S,
    Admission,
    Connection,
    HandshakeRequest,
    RegistryBacklog,
    Rejection,
    Spawn,
    Transport,
    origin_refusal,
    reraise_if_cancelling,
)
from stickyws.server.metrics import Metrics
from stickyws.server.outbound import Outbound
from stickyws.server.send_on import RevisionView, wants_send_on
from stickyws.server.session import SessionState
from stickyws.server.topics import Topics
from stickyws.server.upkeep import Upkeep
from stickyws.settings.model import ServerSettings

log = logging.getLogger("stickyws.server")


def mirror_tail(outbox: Sequence[tuple[int, str]]) -> tuple[tuple[int, str], ...]:
    """The newest outbox entries that the connection's mirror keeps (see ``session.OUTBOX_LIMIT``)."""
    return tuple(outbox[-OUTBOX_LIMIT:])


def last_seq(raw: str | None) -> int | None:
    """The ``lastSeq`` query value as a non-negative int, or ``None`` when absent or not a number."""
    if raw is None or not (raw.isascii() and raw.isdigit()):
        return None
    return int(raw)


class Admissions:
    """Handshakes in flight and the opening and end of connections (see the module docstring).

    ``serving`` says whether the server admits handshakes; ``tell_reconnect`` drains a connection
    opened after the drain began; ``on_violation`` ends one whose welcome failed.
    """

    def __init__(
        self,
        *,
        server_id: str,
        registry: Registry,
        verifier: TokenVerifier,
        server: ServerSettings,
        limits: OutboxLimits,
        metrics: Metrics,
        connections: dict[str, Connection],
        by_user: dict[str, Connection],
        backlog: RegistryBacklog,
        outbound: Outbound,
        topics: Topics,
        upkeep: Upkeep,
        spawn: Spawn,
        serving: Callable[[], bool],
        tell_reconnect: Callable[[Connection, int], Coroutine[Any, Any, None]],
        on_violation: Callable[[Connection, int, str, str], Coroutine[Any, Any, None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server_id = server_id
        self.registry = registry
        self.verifier = verifier
        self.server = server
        self.limits = limits
        self.metrics = metrics
        self.connections = connections
        self.by_user = by_user
        self.backlog = backlog
        self.outbound = outbound
        self.topics = topics
        self.upkeep = upkeep
        self._spawn = spawn
        self._serving = serving
        self._tell_reconnect = tell_reconnect
        self._on_violation = on_violation
        self._clock = clock
        self._rng = random.Random()
        #: The registry's revisions, read for handshakes that avoid this server's revision.
        self.revisions = RevisionView(registry.server_heartbeats, clock=clock)
        #: Handshakes admitted whose socket is not open yet (they count against ``max_connections``).
        self.pending = 0
        #: Pushes that arrived for users whose handshake is in flight (applied when the socket opens).
        self.admitting: dict[str, list[UserPush]] = {}
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ the decision

    def _reject(self, req: HandshakeRequest, status: int, code: str, message: str, *, user: str | None = None,
                retry: bool = False) -> Rejection:  # fmt: skip
        self.metrics.reject(code)
        self.metrics.audit(
            "route", decision="reject", reason=code, status=status, user=user, server=self.server_id, remote=req.remote
        )
        return Rejection(status, code, message, RETRY_AFTER_S if retry else None)

    def checks(self, req: HandshakeRequest) -> tuple[Rejection, str | None] | tuple[str, str | None]:
        """The checks a handshake passes before the registry, in order: state (503 draining), capacity
        (503), origin (403), token (401/403), resume token (403). Returns ``(Rejection, user or None)``
        or ``(user_id, session_id from the resume token or None)``. Pure: no metric, no log."""
        if not self._serving():
            return Rejection(503, protocol.REJECT_DRAINING, "server is draining: retry", RETRY_AFTER_S), None
        if len(self.connections) + self.pending >= self.server.max_connections:
            text = f"server holds {self.server.max_connections} connections"
            return Rejection(503, protocol.REJECT_AT_CAPACITY, text, RETRY_AFTER_S), None
        origin = req.headers.get("Origin")
        if not origin_allowed(origin, self.server.allowed_origins):
            return Rejection(403, protocol.REJECT_ORIGIN, origin_refusal(origin)), None
        try:
            user_id = self.verifier.verify(extract_token(req.query, req.headers, req.subprotocols))
        except AuthError as exc:
            if exc.kind == "missing":
                return Rejection(401, protocol.REJECT_MISSING_TOKEN, str(exc)), None
            return Rejection(403, protocol.REJECT_INVALID_TOKEN, str(exc)), None
        resume = extract_resume(req.query, req.headers)
        if not resume:
            return user_id, None
        try:
            return user_id, self.verifier.verify_resume(user_id, resume)
        except AuthError as exc:
            return Rejection(403, protocol.REJECT_INVALID_RESUME, str(exc)), user_id

    async def admit(self, req: HandshakeRequest) -> Admission | Rejection:
        """Decide a handshake; on :class:`Admission` the caller must :meth:`open` or :meth:`abandon` it."""
        checked, detail = self.checks(req)
        if isinstance(checked, Rejection):
            r = checked
            return self._reject(req, r.status, r.code, r.message, user=detail, retry=r.retry_after_s is not None)
        user_id, resumed_id = checked, detail
        avoid = protocol.parse_avoid(req.query.get(protocol.AVOID_QUERY))
        if wants_send_on(avoid, self.server.revision) and await self.revisions.other_live(avoid):
            return self._send_on(req, user_id, avoid)
        resume = resumed_id is not None
        session_id = resumed_id if resumed_id is not None else new_session_id()
        seen = last_seq(req.query.get(protocol.LAST_SEQ_QUERY)) if resume else None
        self.pending += 1
        self.admitting.setdefault(user_id, [])
        try:
            result = await self.registry.handshake(
                user_id=user_id,
                server_id=self.server_id,
                session_id=session_id,
                resume=bool(resume),
                reject_live_owner=self.server.connection_policy == "reject",
                routing_ttl_s=self.server.routing_ttl_s,
                session_ttl_s=self.server.session_ttl_s,
                replay_after=seen,
                limits=self.limits,
            )
        except RegistryUnavailable:
            self.backlog.needs_reconcile = True
            if self.server.registry_down_policy == "reject":
                self.pending -= 1
                self.admitting.pop(user_id, None)
                return self._reject(
                    req, 503, protocol.REJECT_REGISTRY_DOWN, "registry unavailable: retry", user=user_id, retry=True
                )
            # registry_down_policy=accept: a fresh session (the stored one cannot be read), registered on reconcile.
            record = SessionRecord(new_session_id(), user_id)
            self.metrics.audit(
                "route", decision="accept", reason="registry_down", user=user_id, server=self.server_id,
                remote=req.remote,
            )  # fmt: skip
            return Admission(user_id, record, False, None, req.remote)
        if not result.claimed or result.session is None:
            self.pending -= 1
            self.admitting.pop(user_id, None)
            return self._reject(
                req, 409, protocol.REJECT_CONFLICT, f"user is connected to live server {result.previous}", user=user_id
            )
        reason = "resume" if result.resumed else "new"
        if result.previous not in (None, self.server_id):
            reason += "+takeover"
        self.metrics.audit(
            "route", decision="accept", reason=reason, user=user_id, server=self.server_id,
            previous=result.previous, remote=req.remote, session=session_id,
        )  # fmt: skip
        since = protocol.parse_since(req.query.get(protocol.SINCE_QUERY)) if result.resumed else {}
        return Admission(
            user_id, result.session, result.resumed, result.previous, req.remote,
            seen if result.resumed else None, since, result.replay_confirmed,
        )  # fmt: skip

    def _send_on(self, req: HandshakeRequest, user_id: str, avoid: str) -> Admission:
        """Admit the upgrade only to send the client on (see :meth:`open`); nothing is claimed or opened."""
        self.pending += 1
        self.metrics.count("SendsOn")
        self.metrics.audit(
            "route", decision="send_on", reason="avoid_revision", user=user_id, server=self.server_id,
            revision=avoid, remote=req.remote,
        )  # fmt: skip
        return Admission(user_id, SessionRecord("", user_id), False, None, req.remote, send_on=avoid)

    def preflight(self, req: HandshakeRequest) -> Rejection | None:
        """What :meth:`admit` would answer now, without claiming a route or opening a session (see
        :meth:`stickyws.server.core.ServerCore.preflight`)."""
        checked, _ = self.checks(req)
        if isinstance(checked, Rejection):
            return checked
        if not self.registry.available and self.server.registry_down_policy == "reject":
            return Rejection(503, protocol.REJECT_REGISTRY_DOWN, "registry unavailable: retry", RETRY_AFTER_S)
        return None

    def stash(self, push: UserPush) -> None:
        """Keep a push for a user whose handshake is in flight (dropped when no handshake is)."""
        stash = self.admitting.get(push.user_id)
        if stash is not None:
            stash.append(push)

    async def abandon(self, admission: Admission) -> None:
        """The upgrade failed after :meth:`admit`: free the slot and the route."""
        self.pending -= 1
        if admission.send_on:
            return
        self.admitting.pop(admission.user_id, None)
        if admission.user_id not in self.by_user:
            await self.upkeep.release(admission.user_id)

    # ------------------------------------------------------------------ the connection

    async def open(self, admission: Admission, transport: Transport) -> Connection:
        """Register an upgraded connection, send ``connected``, then what the client missed (see
        :meth:`stickyws.server.core.ServerCore.open` for the order); a send-on gets only ``reconnect``
        (reason ``send_on``, the same ``avoid``, ``retryAfterMs`` at most ``SEND_ON_MAX_RETRY_MS``) and 1012,
        and is never registered."""
        self.pending -= 1
        now = self._clock()
        if admission.send_on:
            conn = Connection(f"c{next(self._ids)}", SessionState.from_record(admission.session), transport,
                              admission.remote, now, now)  # fmt: skip
            retry_ms = self._rng.randint(0, protocol.SEND_ON_MAX_RETRY_MS)
            self.outbound.write(conn, protocol.reconnect(protocol.RECONNECT_SEND_ON, retry_ms, avoid=admission.send_on))
            self._spawn(conn.close(protocol.CLOSE_SERVICE_RESTART, "sent on to another revision"))
            return conn
        record = admission.session
        mirror = record._replace(outbox=mirror_tail(record.outbox))
        conn = Connection(
            f"c{next(self._ids)}", SessionState.from_record(mirror), transport, admission.remote, now, now
        )
        conn.session.dirty = self.backlog.needs_reconcile
        old = self.by_user.get(conn.user_id)
        self.connections[conn.conn_id] = conn
        self.by_user[conn.user_id] = conn
        self.metrics.count("HandshakesAccepted")
        if admission.resumed:
            self.metrics.count("SessionsResumed")
        if old is not None:
            self.topics.hub.forget(old)
            self._spawn(old.close(protocol.CLOSE_TAKEN_OVER, "taken over by a newer connection"))
        try:
            await self._welcome(conn, admission)
        except Exception:  # a registry reply we did not expect: end this connection as on_text would
            reraise_if_cancelling()
            log.exception("opening the connection of %s failed", conn.user_id)
            text = "server error: reconnect"
            self._spawn(self._on_violation(conn, protocol.CLOSE_INTERNAL_ERROR, protocol.ERR_INTERNAL, text))
        return conn

    async def _welcome(self, conn: Connection, admission: Admission) -> None:
        """:meth:`open` after the registration: the ``connected`` frame and what the client missed."""
        record = admission.session
        s = conn.session
        out = self.outbound
        out.write(
            conn,
            protocol.connected(
                server_id=self.server_id,
                session_id=s.session_id,
                resume_token=self.verifier.resume_token(s.user_id, s.session_id),
                heartbeat_ms=int(self.server.heartbeat_interval_s * 1000),
                resumed=admission.resumed,
                last_client_id=s.last_client_id,
                last_server_seq=s.last_server_seq,
                subscriptions=sorted(s.subscriptions),
            ),
        )
        if admission.last_seq is not None and not admission.replay_confirmed:
            # No replica confirmed the replay yet: show none of it; it is read again until one does.
            conn.cursor.sent = min(admission.last_seq, s.last_server_seq)
            out.fill_later(conn, s.last_server_seq)
        elif admission.last_seq is not None:
            seen = min(admission.last_seq, s.last_server_seq)
            conn.cursor.sent = seen
            if seen + 1 < record.out_first:
                lost_to = min(record.out_first - 1, s.last_server_seq)
                out.write(conn, protocol.gap(seen + 1, lost_to))
                self.metrics.count("ReplayGaps")
                conn.cursor.skip(lost_to)
            for seq, text in record.outbox:
                out.offer(conn, seq, text)
            out.skip_missing(conn, s.last_server_seq)
        else:
            conn.cursor.sent = s.last_server_seq
        for push in self.admitting.pop(conn.user_id, ()):
            out.push(conn, push)
        channel = self.registry.user_channel(conn.user_id)
        if channel is not None:  # a cluster: the user's own sharded channel, then what came before it was live
            with contextlib.suppress(RegistryUnavailable):
                await self.registry.subscribe([channel])
                await self.upkeep.recheck([conn])
        if admission.previous_owner not in (None, self.server_id):
            body = takeover_body(conn.user_id, self.server_id)
            with contextlib.suppress(RegistryUnavailable):
                await self.registry.publish(keys.takeover_channel(str(admission.previous_owner)), body)
        if s.subscriptions:
            await self.topics.open(conn, sorted(s.subscriptions), admission.since)
        if not self._serving():
            self._spawn(self._tell_reconnect(conn, 0))

    async def closed(self, conn: Connection) -> None:
        """Forget a connection that ended; release its route if no newer one of the user is here."""
        if self.connections.pop(conn.conn_id, None) is None:
            return
        self.topics.hub.forget(conn)
        if self.by_user.get(conn.user_id) is conn:
            del self.by_user[conn.user_id]
            channel = self.registry.user_channel(conn.user_id)
            if channel is not None:
                self._spawn(self._unsubscribe_user(conn.user_id, channel))
            await self.upkeep.release(conn.user_id)

    async def _unsubscribe_user(self, user_id: str, channel: str) -> None:
        if user_id not in self.by_user:
            with contextlib.suppress(RegistryUnavailable):
                await self.registry.unsubscribe([channel])
