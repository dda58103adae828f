"""The server core: handshake decisions, sessions, heartbeat, drain and reconciliation.

Free of any WebSocket library: the adapter (:mod:`stickyws.server.ws_adapter`) turns HTTP
requests into :class:`HandshakeRequest`, calls :meth:`ServerCore.admit`, upgrades, and hands the
core a :class:`Transport` plus every text frame. Everything here can be driven by tests with a fake
transport, a real Redis, or the in-memory registry.

Lifecycle (:class:`ServerState`): ``STARTING -> SERVING -> DRAINING -> CLOSED``.

* :meth:`start` reads a stored drain notice (a notice published before we subscribed counts),
  starts the heartbeat loop and the pub/sub listener.
* :meth:`begin_drain` (idempotent; any trigger): mark ``draining`` in the heartbeat, answer
  ``/health`` 503, refuse handshakes 503 + Retry-After, tell each client to reconnect at its moment
  of the plan (:mod:`stickyws.server.drain`), close it with 1012, wait until all are gone or the
  deadline, then close what is left. After SIGTERM the remaining plan is squeezed into
  ``shutdown_timeout_s``.
* :meth:`close` (idempotent): stop the loops, close what is still open with 1001, release routes,
  close the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import json
import logging
import random
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from stickyws import keys, protocol
from stickyws.registry.errors import NotYetReplicated, RegistryUnavailable, SessionReplaced
from stickyws.registry.interfaces import Registry, TopicHistory
from stickyws.registry.records import OUTBOX_LIMIT, Commit, CommitResult, OutboxLimits, SessionRecord, append_outbox
from stickyws.registry.wire import BusEvent, DrainNotice, Publication, Takeover, UserPush, takeover_body
from stickyws.server import drain as drain_plan
from stickyws.server.auth import AuthError, TokenVerifier, extract_resume, extract_token, new_session_id, origin_allowed
from stickyws.server.delivery import SeqCursor, TopicCursor
from stickyws.server.handler import Handler, HandlerContext, HandlerError, echo_handler
from stickyws.server.metrics import Metrics
from stickyws.server.session import SessionState
from stickyws.settings import Settings

log = logging.getLogger("stickyws.server")

#: ``Retry-After`` (seconds) on 503 answers.
RETRY_AFTER_S = 1
#: Pause before resubscribing after an unexpected pub/sub failure.
LISTEN_RETRY_S = 0.5
#: How long :meth:`ServerCore.start` waits for the first pub/sub subscription (drain notices, takeover
#: requests, pushes) before it serves anyway: a registry that is down at start must not keep it down.
LISTEN_READY_S = 2.0
#: How long close() waits for its background tasks after cancelling them.
LOOP_STOP_TIMEOUT_S = 2.0
#: How long an early message waits for the one before it (it may still be on its way by another path)
#: before the server reads the missing range from the registry.
GAP_WAIT_S = 0.05
#: Pause between catch-up reads of messages that no replica was confirmed to hold yet (each read also waits
#: up to ``ack_wait_timeout_ms`` for the replicas).
REPLICATION_RETRY_S = 0.2
#: How long an ack waits for its outputs to be written when they wait behind a gap.
ACK_WAIT_S = 2.0


def _reraise_if_cancelling() -> None:
    """Raise ``CancelledError`` if this task was cancelled (a library turned the cancellation into an error)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _mirror_tail(outbox: Sequence[tuple[int, str]]) -> tuple[tuple[int, str], ...]:
    """The newest outbox entries that the connection's mirror keeps (see ``session.OUTBOX_LIMIT``)."""
    return tuple(outbox[-OUTBOX_LIMIT:])


def _last_seq(raw: str | None) -> int | None:
    """The ``lastSeq`` query value as a non-negative int, or ``None`` when absent or not a number."""
    if raw is None or not (raw.isascii() and raw.isdigit()):
        return None
    return int(raw)


#: Hosts a browser elsewhere cannot reach: no startup warning about ``allowed_origins`` for them.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def origin_refusal(origin: str | None) -> str:
    """The message of a 403 ``origin_not_allowed``: names the origin and the setting that admits it."""
    return (
        f"origin {origin!r} is not allowed: add it to the allowed_origins setting "
        f"(STICKYWS_ALLOWED_ORIGINS={origin}, comma-separated; * allows any origin)"
    )


def origin_warning(allowed_origins: Sequence[str], host: str) -> str | None:
    """The startup warning for a server browsers can reach but no browser may use, else ``None``.

    Browsers always send ``Origin``; with ``allowed_origins`` empty every browser handshake is
    refused with 403. Loopback binds (``127.0.0.0/8``, ``::1``, ``localhost``) get no warning.
    """
    if allowed_origins or host in LOOPBACK_HOSTS or host.startswith("127."):
        return None
    return (
        f"allowed_origins is empty on a server bound to {host}: every browser handshake (browsers always "
        "send Origin) is refused with 403 origin_not_allowed; set STICKYWS_ALLOWED_ORIGINS to your pages' "
        "origins, e.g. https://app.example.com (comma-separated)"
    )


class ServerState(enum.Enum):
    """Where the server is in its life."""

    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"
    CLOSED = "closed"


@dataclass(frozen=True)
class HandshakeRequest:
    """What the core needs from an upgrade request (``headers`` must be case-insensitive)."""

    query: Mapping[str, str]
    headers: Mapping[str, str]
    subprotocols: tuple[str, ...] = ()
    remote: str | None = None


@dataclass(frozen=True)
class Rejection:
    """A refused handshake: HTTP ``status`` with JSON body ``{"error": code, "message": ...}``."""

    status: int
    code: str
    message: str
    retry_after_s: int | None = None

    def body(self) -> str:
        """The JSON body."""
        return protocol.dumps({"error": self.code, "message": self.message})


@dataclass(frozen=True)
class Admission:
    """An accepted handshake, waiting for the upgrade to complete."""

    user_id: str
    session: SessionRecord
    resumed: bool
    previous_owner: str | None
    remote: str | None
    #: The client's last seen server seq (``lastSeq`` query) on resume: later outbox messages are replayed.
    last_seq: int | None = None
    #: The client's topic positions (``since`` query) on resume.
    since: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    #: False when the replayed outbox is not confirmed on the replicas yet: it is read again, not shown.
    replay_confirmed: bool = True


class SharedFrame:
    """One text frame written to many connections: ``text``, and ``wire``, its encoding, which the
    first transport that needs it fills in and the others reuse."""

    __slots__ = ("text", "wire")

    def __init__(self, text: str) -> None:
        self.text = text
        self.wire: bytes | None = None


class Transport(Protocol):
    """One open WebSocket as the core sees it."""

    def write(self, text: str) -> int:
        """Queue one text frame without waiting; returns the bytes still unsent on this connection
        (raises ``ConnectionError`` when the socket is gone). Frames go out in call order."""
        ...

    def write_shared(self, frame: SharedFrame) -> int:
        """:meth:`write` for one frame sent to many connections (a publication): the transport may
        encode it once into ``frame.wire`` and hand the same bytes to every socket."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close with ``code`` (idempotent)."""
        ...


@dataclass(eq=False, slots=True)
class Connection:
    """A live connection: its transport and its session mirror."""

    conn_id: str
    session: SessionState
    transport: Transport
    remote: str | None
    opened_at: float
    route_refreshed_at: float
    closing: bool = False
    #: The session's messages written to this socket (see :mod:`stickyws.server.delivery`).
    cursor: SeqCursor = field(default_factory=SeqCursor)
    #: Position per subscribed topic.
    topics: dict[str, TopicCursor] = field(default_factory=dict)
    #: True while a read of missing messages is in flight.
    filling: bool = False
    #: Highest seq the registry was seen to hold that this socket still lacks (read again until written).
    fill_through: int = 0

    @property
    def user_id(self) -> str:
        """The authenticated user."""
        return self.session.user_id


@dataclass
class _DrainRun:
    source: str
    started_at: float
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ServerCore:
    """The reference server minus the socket library (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        server_id: str,
        registry: Registry,
        verifier: TokenVerifier,
        handler: Handler = echo_handler,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
        registry_kind: str = "redis",
    ) -> None:
        self.settings = settings
        self.sv = settings.server
        self.dv = settings.delivery
        self.limits = OutboxLimits(self.dv.outbox_max_messages, self.dv.outbox_max_bytes)
        #: ``inbound_delivery=at_most_once``: sends are handled and acknowledged without a registry commit.
        self._at_most_once = self.dv.inbound_delivery == "at_most_once"
        self.server_id = server_id
        self.registry = registry
        self.verifier = verifier
        self.handler = handler
        self.metrics = metrics or Metrics(settings["metrics_namespace"])
        self.rng = rng or random.Random()
        self.registry_kind = registry_kind
        self.state = ServerState.STARTING
        self.connections: dict[str, Connection] = {}
        self.by_user: dict[str, Connection] = {}
        #: Connections per topic (the server holds one channel subscription per topic in here).
        self.topic_conns: dict[str, set[Connection]] = {}
        #: Pushes that arrived for users whose handshake is in flight (applied when the socket opens).
        self._admitting: dict[str, list[UserPush]] = {}
        self._pending = 0
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[Any]] = []
        self._listening = asyncio.Event()
        self._needs_reconcile = False
        self._pending_releases: set[str] = set()
        self._drain: _DrainRun | None = None
        self._sigterm = asyncio.Event()
        self._closed = asyncio.Event()
        self._close_started = False
        #: Drain instructions sent, as ``(monotonic time, conn_id)`` (for tests and the audit log).
        self.reconnects_sent: list[tuple[float, str]] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start serving: heartbeat loop, pub/sub listener, and a first look for a drain notice.

        Handshakes are answered 503 until the listener holds its channels (drain notices, takeover
        requests, pushes), for at most :data:`LISTEN_READY_S`: a takeover published at once is not lost."""
        if self.state is not ServerState.STARTING or self._loops:
            return
        self._loops.append(asyncio.create_task(self._heartbeat_loop(), name="stickyws-heartbeat"))
        self._loops.append(asyncio.create_task(self._listen(), name="stickyws-listen"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LISTEN_READY_S):
                await self._listening.wait()
        if self.state is ServerState.STARTING:  # a drain notice may have come first
            self.state = ServerState.SERVING
        self.metrics.audit("server_start", server=self.server_id, registry=self.registry_kind)

    @property
    def draining(self) -> bool:
        """True from the first drain trigger on."""
        return self._drain is not None

    def health(self, accepting: bool = True) -> tuple[int, dict[str, Any]]:
        """``(status, body)`` of ``/health``: 200 while serving and accepting, else 503."""
        registry = "ok" if self.registry.available else "degraded"
        if self.registry_kind == "memory":
            registry = "memory"
        ok = self.state is ServerState.SERVING and accepting
        status = self.state.value
        if self.state is ServerState.SERVING and not accepting:
            status = "not_accepting"
        body = {
            "status": status,
            "serverId": self.server_id,
            "connections": len(self.connections),
            "draining": self.draining,
            "registry": registry,
        }
        return (200 if ok else 503), body

    def begin_drain(self, source: str, reason: str = "", *, sigterm: bool = False) -> None:
        """Start draining (idempotent; a later SIGTERM squeezes the rest of the plan)."""
        if sigterm:
            self._sigterm.set()
        if self._drain is not None or self.state is ServerState.CLOSED:
            return
        self.state = ServerState.DRAINING
        self._drain = _DrainRun(source, time.monotonic())
        self.metrics.audit("drain_start", server=self.server_id, source=source, reason=reason, sigterm=sigterm)
        self._spawn(self._run_drain(self._drain))

    async def wait_stopped(self) -> None:
        """Return once SIGTERM has come AND the drain has finished (the moment to exit 0)."""
        await self._sigterm.wait()
        if self._drain is not None:  # None only when SIGTERM came after close()
            await self._drain.done.wait()

    async def wait_drained(self, timeout_s: float) -> None:
        """Wait until the current drain has finished (raises ``TimeoutError`` after ``timeout_s``)."""
        async with asyncio.timeout(timeout_s):
            while self._drain is None:  # noqa: ASYNC110 - the drain object does not exist yet
                await asyncio.sleep(0.01)
            await self._drain.done.wait()

    async def close(self) -> None:
        """Stop for good (idempotent).

        Steps: stop accepting (state ``CLOSED``), cancel the heartbeat and listener, close every
        connection still open with 1001, release their routes, close the registry.
        """
        if self._close_started:
            await self._closed.wait()
            return
        self._close_started = True
        self.state = ServerState.CLOSED
        for task in self._loops:
            task.cancel()
        if self._loops:
            # asyncio.wait neither raises the tasks' errors nor swallows a cancellation of close() itself.
            _, stuck = await asyncio.wait(self._loops, timeout=LOOP_STOP_TIMEOUT_S)
            for task in stuck:
                where = "".join(traceback.format_stack(task.get_stack(limit=8)[-1])) if task.get_stack() else "?"
                log.warning("%s did not stop within %g s, at:\n%s", task.get_name(), LOOP_STOP_TIMEOUT_S, where)
        conns = list(self.connections.values())
        await asyncio.gather(
            *(self._close_conn(c, protocol.CLOSE_GOING_AWAY, "server shutting down") for c in conns),
            return_exceptions=True,
        )
        for c in conns:
            await self.on_closed(c)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=LOOP_STOP_TIMEOUT_S)
        with contextlib.suppress(RegistryUnavailable):
            await self.registry.heartbeat(self.server_id, self._heartbeat_body("stopped"), 1)
        await self.registry.close()
        self.metrics.audit("server_stop", server=self.server_id)
        self._closed.set()

    # ------------------------------------------------------------------ handshake

    def _reject(self, req: HandshakeRequest, status: int, code: str, message: str, *, user: str | None = None,
                retry: bool = False) -> Rejection:  # fmt: skip
        self.metrics.reject(code)
        self.metrics.audit(
            "route", decision="reject", reason=code, status=status, user=user, server=self.server_id, remote=req.remote
        )
        return Rejection(status, code, message, RETRY_AFTER_S if retry else None)

    def _checks(self, req: HandshakeRequest) -> tuple[Rejection, str | None] | tuple[str, str | None]:
        """The checks a handshake passes before the registry, in order: state (503 draining), capacity
        (503), origin (403), token (401/403), resume token (403). Returns ``(Rejection, user or None)``
        or ``(user_id, session_id from the resume token or None)``. Pure: no metric, no log."""
        if self.state is not ServerState.SERVING:
            return Rejection(503, protocol.REJECT_DRAINING, "server is draining: retry", RETRY_AFTER_S), None
        if len(self.connections) + self._pending >= self.sv.max_connections:
            text = f"server holds {self.sv.max_connections} connections"
            return Rejection(503, protocol.REJECT_AT_CAPACITY, text, RETRY_AFTER_S), None
        origin = req.headers.get("Origin")
        if not origin_allowed(origin, self.sv.allowed_origins):
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
        checked, detail = self._checks(req)
        if isinstance(checked, Rejection):
            r = checked
            return self._reject(req, r.status, r.code, r.message, user=detail, retry=r.retry_after_s is not None)
        user_id, resumed_id = checked, detail
        resume = resumed_id is not None
        session_id = resumed_id if resumed_id is not None else new_session_id()
        last_seq = _last_seq(req.query.get(protocol.LAST_SEQ_QUERY)) if resume else None
        self._pending += 1
        self._admitting.setdefault(user_id, [])
        try:
            result = await self.registry.handshake(
                user_id=user_id,
                server_id=self.server_id,
                session_id=session_id,
                resume=bool(resume),
                reject_live_owner=self.sv.connection_policy == "reject",
                routing_ttl_s=self.sv.routing_ttl_s,
                session_ttl_s=self.sv.session_ttl_s,
                replay_after=last_seq,
                limits=self.limits,
            )
        except RegistryUnavailable:
            self._needs_reconcile = True
            if self.sv.registry_down_policy == "reject":
                self._pending -= 1
                self._admitting.pop(user_id, None)
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
            self._pending -= 1
            self._admitting.pop(user_id, None)
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
            last_seq if result.resumed else None, since, result.replay_confirmed,
        )  # fmt: skip

    def preflight(self, req: HandshakeRequest) -> Rejection | None:
        """What :meth:`admit` would answer now, without claiming a route or opening a session.

        ``None``: the handshake would be admitted as far as this server can tell; else the same
        :class:`Rejection` (status, code, ``Retry-After``). Checks, in :meth:`admit`'s order: state
        (503 draining), capacity (503), origin (403), token (401/403), resume token (403), registry
        outage under ``registry_down_policy=reject`` (503). It reads nothing from the registry, so it
        cannot predict a 409 (``connection_policy=reject`` with the user live elsewhere). Counted in
        no metric: it is a question, not a handshake.
        """
        checked, _ = self._checks(req)
        if isinstance(checked, Rejection):
            return checked
        if not self.registry.available and self.sv.registry_down_policy == "reject":
            return Rejection(503, protocol.REJECT_REGISTRY_DOWN, "registry unavailable: retry", RETRY_AFTER_S)
        return None

    async def abandon(self, admission: Admission) -> None:
        """The upgrade failed after :meth:`admit`: free the slot and the route."""
        self._pending -= 1
        self._admitting.pop(admission.user_id, None)
        if admission.user_id not in self.by_user:
            await self._release(admission.user_id)

    async def open(self, admission: Admission, transport: Transport) -> Connection:
        """Register an upgraded connection, send ``connected``, then what the client missed.

        Order on the socket: ``connected``; on resume with ``lastSeq`` a ``gap`` frame if the outbox
        lost messages, then the kept messages after ``lastSeq``; pushes that arrived during the
        handshake; for each subscribed topic the publications after the client's ``since`` position
        (or ``unrecoverable``); then live traffic.
        """
        self._pending -= 1
        now = time.monotonic()
        record = admission.session
        mirror = record._replace(outbox=_mirror_tail(record.outbox))
        conn = Connection(
            f"c{next(self._ids)}", SessionState.from_record(mirror), transport, admission.remote, now, now
        )
        conn.session.dirty = self._needs_reconcile
        old = self.by_user.get(conn.user_id)
        self.connections[conn.conn_id] = conn
        self.by_user[conn.user_id] = conn
        self.metrics.count("HandshakesAccepted")
        if admission.resumed:
            self.metrics.count("SessionsResumed")
        if old is not None:
            self._forget_topics(old)
            self._spawn(self._close_conn(old, protocol.CLOSE_TAKEN_OVER, "taken over by a newer connection"))
        try:
            await self._welcome(conn, admission)
        except Exception:  # a registry reply we did not expect: end this connection as on_text would
            _reraise_if_cancelling()
            log.exception("opening the connection of %s failed", conn.user_id)
            self._spawn(
                self.on_violation(conn, protocol.CLOSE_INTERNAL_ERROR, protocol.ERR_INTERNAL, "server error: reconnect")
            )
        return conn

    async def _welcome(self, conn: Connection, admission: Admission) -> None:
        """:meth:`open` after the registration: the ``connected`` frame and what the client missed."""
        record = admission.session
        s = conn.session
        self._write(
            conn,
            protocol.connected(
                server_id=self.server_id,
                session_id=s.session_id,
                resume_token=self.verifier.resume_token(s.user_id, s.session_id),
                heartbeat_ms=int(self.sv.heartbeat_interval_s * 1000),
                resumed=admission.resumed,
                last_client_id=s.last_client_id,
                last_server_seq=s.last_server_seq,
                subscriptions=sorted(s.subscriptions),
            ),
        )
        if admission.last_seq is not None and not admission.replay_confirmed:
            # No replica confirmed the replay yet: show none of it; it is read again until one does.
            conn.cursor.sent = min(admission.last_seq, s.last_server_seq)
            self._fill_later(conn, s.last_server_seq)
        elif admission.last_seq is not None:
            seen = min(admission.last_seq, s.last_server_seq)
            conn.cursor.sent = seen
            if seen + 1 < record.out_first:
                lost_to = min(record.out_first - 1, s.last_server_seq)
                self._write(conn, protocol.gap(seen + 1, lost_to))
                self.metrics.count("ReplayGaps")
                conn.cursor.skip(lost_to)
            for seq, text in record.outbox:
                self._offer(conn, seq, text)
            self._skip_missing(conn, s.last_server_seq)
        else:
            conn.cursor.sent = s.last_server_seq
        for push in self._admitting.pop(conn.user_id, ()):
            self._on_user_push(push)
        channel = self.registry.user_channel(conn.user_id)
        if channel is not None:  # a cluster: the user's own sharded channel, then what came before it was live
            with contextlib.suppress(RegistryUnavailable):
                await self.registry.subscribe([channel])
                await self.recheck([conn])
        if admission.previous_owner not in (None, self.server_id):
            body = takeover_body(conn.user_id, self.server_id)
            with contextlib.suppress(RegistryUnavailable):
                await self.registry.publish(keys.takeover_channel(str(admission.previous_owner)), body)
        if s.subscriptions:
            await self._open_topics(conn, sorted(s.subscriptions), admission.since)
        if self.state is not ServerState.SERVING:
            self._spawn(self._tell_reconnect(conn, 0))

    async def on_closed(self, conn: Connection) -> None:
        """Forget a connection that ended; release its route if no newer one of the user is here."""
        if self.connections.pop(conn.conn_id, None) is None:
            return
        self._forget_topics(conn)
        if self.by_user.get(conn.user_id) is conn:
            del self.by_user[conn.user_id]
            channel = self.registry.user_channel(conn.user_id)
            if channel is not None:
                self._spawn(self._unsubscribe_user(conn.user_id, channel))
            await self._release(conn.user_id)

    async def _release(self, user_id: str) -> None:
        try:
            await self.registry.release(user_id, self.server_id)
            self._pending_releases.discard(user_id)
        except RegistryUnavailable:
            self._needs_reconcile = True
            self._pending_releases.add(user_id)

    # ------------------------------------------------------------------ writing

    def _write(self, conn: Connection, text: str) -> None:
        """Queue ``text`` on ``conn``; past ``max_output_bytes`` unsent the connection is a slow
        consumer: it is closed with 1013 and its client resumes from its seq and offsets."""
        if conn.closing:
            return
        try:
            unsent = conn.transport.write(text)
        except (ConnectionError, RuntimeError):
            return
        if unsent > self.dv.max_output_bytes:
            self._slow_consumer(conn, unsent)

    def _write_shared(self, conn: Connection, frame: SharedFrame) -> None:
        """:meth:`_write` of a frame that goes to many connections (encoded once)."""
        if conn.closing:
            return
        try:
            unsent = conn.transport.write_shared(frame)
        except (ConnectionError, RuntimeError):
            return
        if unsent > self.dv.max_output_bytes:
            self._slow_consumer(conn, unsent)

    def _slow_consumer(self, conn: Connection, unsent: int) -> None:
        """Close ``conn`` with 1013: it holds more than ``max_output_bytes`` unsent."""
        self.metrics.count("SlowConsumerCloses")
        self.metrics.audit("slow_consumer", user=conn.user_id, server=self.server_id, unsent=unsent)
        self._forget_topics(conn)
        self._spawn(self._close_conn(conn, protocol.CLOSE_TRY_AGAIN_LATER, "slow consumer"))

    async def _send(self, conn: Connection, text: str) -> None:
        self._write(conn, text)

    def _offer(self, conn: Connection, seq: int, text: str) -> None:
        """Write session message ``seq`` (JSON payload ``text``) in order; hold it behind a gap."""
        for item_seq, item in conn.cursor.offer(seq, text):
            self._write(conn, protocol.message_raw(item_seq, item))
            self.metrics.count("MessagesOut")
        if conn.cursor.waiting and not conn.filling:
            conn.filling = True
            self._spawn(self._fill(conn))

    def _skip_missing(self, conn: Connection, through: int) -> None:
        """After a replay, seqs up to ``through`` that the registry no longer holds are a gap."""
        if conn.cursor.sent < through:
            self._write(conn, protocol.gap(conn.cursor.sent + 1, through))
            self.metrics.count("ReplayGaps")
            for item_seq, item in conn.cursor.skip(through):
                self._write(conn, protocol.message_raw(item_seq, item))

    async def _fill(self, conn: Connection, wait_s: float = GAP_WAIT_S) -> None:
        """Read the messages a connection is missing from the registry (after a short wait, since
        they are usually on their way by another path) and write them, or a ``gap`` for lost ones.
        A read that no replica confirmed yet is made again (:data:`REPLICATION_RETRY_S`), never a ``gap``."""
        try:
            await asyncio.sleep(wait_s)
            while not conn.closing and (missing := self._missing(conn)) is not None:
                try:
                    await self._read_missing(conn, *missing)
                except NotYetReplicated:
                    await asyncio.sleep(REPLICATION_RETRY_S)
                except RegistryUnavailable:
                    self._needs_reconcile = True  # the next beat reconciles and reads again (recheck)
                    return
        finally:
            conn.filling = False

    def _fill_later(self, conn: Connection, through: int) -> None:
        """Read seqs up to ``through`` again in the background (a read no replica confirmed yet)."""
        conn.fill_through = max(conn.fill_through, through)
        if not conn.filling:
            conn.filling = True
            self._spawn(self._fill(conn, REPLICATION_RETRY_S))

    @staticmethod
    def _missing(conn: Connection) -> tuple[int, int, bool] | None:
        """``(first, last, proven)``: the seqs to read next, or ``None``. ``proven``: a later message is held,
        so every seq before it was numbered (a missing one is gone); else they run to ``fill_through``."""
        missing = conn.cursor.missing()
        if missing is not None:
            return missing[0], missing[1], True
        if conn.fill_through > conn.cursor.sent:
            return conn.cursor.sent + 1, conn.fill_through, False
        return None

    async def _read_missing(self, conn: Connection, first: int, last: int, proven: bool) -> None:
        """One catch-up read of seqs ``first..last`` (raises :class:`NotYetReplicated` and
        :class:`RegistryUnavailable`). Unless ``proven``, seqs above the session's ``lastServerSeq`` are not
        numbered (any more, after a failover): they come by push, they are no ``gap``."""
        read = await self.registry.read_outbox(
            user_id=conn.user_id, session_id=conn.session.session_id, first_seq=first, last_seq=last
        )
        if not proven and read.last_seq is not None and read.last_seq < last:
            last = read.last_seq
            conn.fill_through = min(conn.fill_through, last)
        self._apply_range(conn, first, last, read.entries)

    def _apply_range(self, conn: Connection, first: int, last: int, found: Mapping[int, str]) -> None:
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
                self._write(conn, protocol.gap(max(seq, conn.cursor.sent + 1), end))
                self.metrics.count("ReplayGaps")
                for item_seq, item in conn.cursor.skip(end):
                    self._write(conn, protocol.message_raw(item_seq, item))
            seq = end + 1

    def _offer_now(self, conn: Connection, seq: int, text: str) -> None:
        for item_seq, item in conn.cursor.offer(seq, text):
            self._write(conn, protocol.message_raw(item_seq, item))
            self.metrics.count("MessagesOut")

    async def _written_through(self, conn: Connection, seq: int) -> None:
        """Wait (bounded) until session message ``seq`` has been written (it may wait behind a gap)."""
        if conn.cursor.sent >= seq:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ACK_WAIT_S):
                while conn.cursor.sent < seq and not conn.closing:  # noqa: ASYNC110 - bounded, rare
                    await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ pushes and topics

    def _on_user_push(self, push: UserPush) -> None:
        conn = self.by_user.get(push.user_id)
        if conn is None:
            stash = self._admitting.get(push.user_id)
            if stash is not None:
                stash.append(push)
            return
        if push.session_id != conn.session.session_id:
            return
        s = conn.session
        if push.seq > s.last_server_seq:
            s.last_server_seq = push.seq
            s.synced_seq = push.seq  # from the registry: confirmed
            s.outbox = append_outbox(s.outbox, push.seq, (push.data,))
        self.metrics.count("PushesDelivered")
        self._offer(conn, push.seq, push.data)
        if push.ts_ms:
            self.metrics.lag(time.time() * 1000 - push.ts_ms)

    def _on_publication(self, pub: Publication) -> None:
        conns = self.topic_conns.get(pub.topic)
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
                self._spawn(self._fill_topic(conn, pub.topic))
        self.metrics.count("Deliveries", delivered)
        if pub.ts_ms and delivered:
            self.metrics.lag(time.time() * 1000 - pub.ts_ms)

    async def _hub_add(self, conn: Connection, topics: Sequence[str]) -> None:
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

    def _hub_remove(self, conn: Connection, topic: str) -> None:
        conns = self.topic_conns.get(topic)
        if conns is None:
            return
        conns.discard(conn)
        if not conns:
            del self.topic_conns[topic]
            self._spawn(self._unsubscribe_channel(topic))

    async def _unsubscribe_user(self, user_id: str, channel: str) -> None:
        if user_id not in self.by_user:
            with contextlib.suppress(RegistryUnavailable):
                await self.registry.unsubscribe([channel])

    async def _unsubscribe_channel(self, topic: str) -> None:
        if topic not in self.topic_conns:
            with contextlib.suppress(RegistryUnavailable):
                await self.registry.unsubscribe([keys.topic_channel(topic)])

    def _forget_topics(self, conn: Connection) -> None:
        for topic in list(conn.topics):
            self._hub_remove(conn, topic)
        conn.topics.clear()

    async def _open_topics(
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
        await self._hub_add(conn, topics)
        fresh = [t for t in topics if t not in since]
        try:
            if fresh:
                positions = await self.registry.topic_positions(topics=fresh)
                for topic, pos in zip(fresh, positions, strict=True):
                    self._finish_recovery(conn, topic, TopicHistory(pos, ()), live_from_now=True, ack=ack)
            for topic in topics:
                if topic in since:
                    offset, epoch = since[topic]
                    history = await self.registry.topic_since(
                        topic=topic, offset=offset, epoch=epoch, limit=self.dv.topic_retention_count
                    )
                    self._finish_recovery(conn, topic, history, ack=ack)
        except RegistryUnavailable:
            self._needs_reconcile = True  # the next successful beat re-checks every cursor
            if ack is not None:
                cursor = conn.topics.get(topics[0])
                offset, epoch = (cursor.offset, cursor.epoch) if cursor else (0, "")
                self._write(conn, protocol.subscribe_ack(ack[0], topics[0], offset, epoch, duplicate=ack[1]))

    def _finish_recovery(
        self,
        conn: Connection,
        topic: str,
        history: TopicHistory,
        *,
        live_from_now: bool = False,
        ack: tuple[int, bool] | None = None,
    ) -> None:
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
            self._spawn(self._fill_topic(conn, topic))

    async def _fill_topic(self, conn: Connection, topic: str) -> None:
        """Read missed publications of ``topic`` after a short wait; an unreadable range is ``unrecoverable``."""
        await asyncio.sleep(GAP_WAIT_S)
        cursor = conn.topics.get(topic)
        if cursor is None or cursor.missing() is None or conn.closing:
            return
        cursor.recovering = True
        try:
            history = await self.registry.topic_since(
                topic=topic, offset=cursor.offset, epoch=cursor.epoch, limit=self.dv.topic_retention_count
            )
        except RegistryUnavailable:
            cursor.recovering = False
            self._needs_reconcile = True
            return
        self._finish_recovery(conn, topic, history)

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
                    topic=topic, offset=cursor.offset, epoch=cursor.epoch, limit=self.dv.topic_retention_count
                )
                self._finish_recovery(conn, topic, history)

    async def _recheck_one(self, conn: Connection, seq: int) -> None:
        """Read what ``conn`` lacks up to ``seq``; a read no replica confirmed yet is made again later."""
        if conn.closing:
            return
        if conn.filling:  # a read is running: it takes this range too
            conn.fill_through = max(conn.fill_through, seq)
            return
        try:
            await self._read_missing(conn, conn.cursor.sent + 1, seq, False)
        except NotYetReplicated:
            self._fill_later(conn, seq)

    async def _recheck_quietly(self, conns: Sequence[Connection] | None = None) -> None:
        try:
            await self.recheck(conns)
        except RegistryUnavailable:
            self._needs_reconcile = True
        except Exception:
            _reraise_if_cancelling()
            log.exception("re-checking deliveries failed; retrying at the next beat")
            self._needs_reconcile = True

    # ------------------------------------------------------------------ messages

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
        except HandlerError as exc:
            self._write(conn, protocol.error(exc.code, str(exc), msg_id))
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
            await self._close_conn(conn, protocol.CLOSE_TAKEN_OVER, "session replaced by a newer connection")
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
            await self._close_conn(conn, protocol.CLOSE_TAKEN_OVER, "session replaced by a newer connection")
            return
        await self._on_topic_op(conn, msg, duplicate=result.duplicate)

    async def _on_topic_op(self, conn: Connection, msg: protocol.ClientMessage, *, duplicate: bool) -> None:
        """Apply a committed subscribe/unsubscribe to the delivery state and acknowledge it."""
        topic = msg.topic
        if msg.type == "unsubscribe":
            conn.topics.pop(topic, None)
            self._hub_remove(conn, topic)
            self._write(conn, protocol.ack(msg.id, duplicate=duplicate))
            return
        if topic not in conn.topics or msg.offset is not None:
            since = {topic: (msg.offset, msg.epoch)} if msg.offset is not None else {}
            conn.topics.pop(topic, None)
            await self._open_topics(conn, [topic], since, ack=(msg.id, duplicate))
            return
        cursor = conn.topics[topic]
        self._write(conn, protocol.subscribe_ack(msg.id, topic, cursor.offset, cursor.epoch, duplicate=duplicate))

    async def _commit(self, conn: Connection, commit: Commit) -> CommitResult:
        session = conn.session
        try:
            if session.dirty:
                lost = await self.registry.reconcile(
                    self.server_id, [session.record()], routing_ttl_s=self.sv.routing_ttl_s,
                    session_ttl_s=self.sv.session_ttl_s,
                )  # fmt: skip
                session.dirty = False
                if lost:
                    self._spawn(self._close_conn(conn, protocol.CLOSE_TAKEN_OVER, "taken over while registry was down"))
                else:  # pushes the registry took meanwhile were numbered after the local seqs: deliver them
                    self._spawn(self._recheck_quietly([conn]))
            result = await self.registry.commit(
                session.record(), commit, server_id=self.server_id, routing_ttl_s=self.sv.routing_ttl_s,
                session_ttl_s=self.sv.session_ttl_s, limits=self.limits,
            )  # fmt: skip
        except RegistryUnavailable:
            self._needs_reconcile = True
            return session.apply_local(commit)
        session.sync(result.record)
        conn.route_refreshed_at = time.monotonic()
        return result

    async def on_violation(self, conn: Connection, close_code: int, error_code: str, message: str) -> None:
        """A protocol violation: send an ``error`` frame, then close with ``close_code``."""
        await self._send(conn, protocol.error(error_code, message))
        await self._close_conn(conn, close_code, message[:120])

    async def _close_conn(self, conn: Connection, code: int, reason: str) -> None:
        if conn.closing:
            return
        conn.closing = True
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
            await conn.transport.close(code, reason)

    # ------------------------------------------------------------------ registry upkeep

    def _heartbeat_body(self, status: str | None = None) -> str:
        return json.dumps(
            {
                "serverId": self.server_id,
                "connections": len(self.connections),
                "status": status or ("draining" if self.draining else "serving"),
                "ts": int(time.time() * 1000),
            },
            separators=(",", ":"),
        )

    async def beat(self) -> None:
        """One heartbeat: write liveness, reconcile after an outage, refresh idle routes, look for a
        drain notice, flush metrics. Never raises for a registry outage."""
        try:
            await self.registry.heartbeat(self.server_id, self._heartbeat_body(), self.sv.heartbeat_ttl_s)
            if self._needs_reconcile:
                await self.reconcile()
                await self.recheck()
            else:
                # Idle connections: refresh route and session well before either TTL runs out.
                stale = time.monotonic() - min(self.sv.routing_ttl_s, self.sv.session_ttl_s) / 3
                await self._reconcile([c for c in self.connections.values() if c.route_refreshed_at < stale])
            notice = await self.registry.drain_notice(self.server_id)
            if notice is not None:
                self.begin_drain(notice.source, notice.reason)
        except RegistryUnavailable:
            self._needs_reconcile = True
        self.metrics.flush(len(self.connections))

    async def reconcile(self) -> None:
        """Re-register every live connection and session, and finish releases missed while down."""
        self._needs_reconcile = False
        try:
            await self._reconcile(list(self.connections.values()))
            for user_id in list(self._pending_releases):
                if user_id not in self.by_user:
                    await self.registry.release(user_id, self.server_id)
                self._pending_releases.discard(user_id)
        except RegistryUnavailable:
            self._needs_reconcile = True
            raise
        self.metrics.audit("reconciled", server=self.server_id, connections=len(self.connections))

    async def _reconcile(self, conns: Sequence[Connection]) -> None:
        if not conns:
            return
        lost = set(
            await self.registry.reconcile(
                self.server_id, [c.session.record() for c in conns], routing_ttl_s=self.sv.routing_ttl_s,
                session_ttl_s=self.sv.session_ttl_s,
            )
        )  # fmt: skip
        now = time.monotonic()
        for conn in conns:
            conn.session.dirty = False
            conn.route_refreshed_at = now
            if conn.user_id in lost:
                self.metrics.audit("route", decision="lost", reason="taken_over_while_down", user=conn.user_id,
                                   server=self.server_id, remote=conn.remote)  # fmt: skip
                self._spawn(self._close_conn(conn, protocol.CLOSE_TAKEN_OVER, "taken over while registry was down"))

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception:  # a registry reply we did not expect must not stop the heartbeat
                _reraise_if_cancelling()
                log.exception("heartbeat failed; retrying at the next beat")
                self._needs_reconcile = True
            await asyncio.sleep(self.sv.heartbeat_interval_s)

    async def _listen(self) -> None:
        async def on_event(event: BusEvent) -> None:
            if type(event) is UserPush:
                self._on_user_push(event)
            elif type(event) is Publication:
                self._on_publication(event)
            elif type(event) is DrainNotice:
                if event.server_id == self.server_id:
                    self.begin_drain(event.source, event.reason)
            elif type(event) is Takeover:
                user_id, by = event.user_id, event.by
                conn = self.by_user.get(user_id)
                if conn is None or by == self.server_id:
                    return
                with contextlib.suppress(RegistryUnavailable):
                    if await self.registry.owner(user_id) == self.server_id:
                        return  # a stale request: the user came back here after that takeover
                if self.by_user.get(user_id) is conn:
                    self.metrics.audit("route", decision="taken_over", reason="takeover", user=user_id,
                                       server=self.server_id, by=by, remote=conn.remote)  # fmt: skip
                    del self.by_user[user_id]
                    await self._close_conn(conn, protocol.CLOSE_TAKEN_OVER, f"taken over by {by}")

        async def on_subscribed() -> None:
            self._listening.set()
            with contextlib.suppress(RegistryUnavailable):
                notice = await self.registry.drain_notice(self.server_id)
                if notice is not None:
                    self.begin_drain(notice.source, notice.reason)
            # Pushes and publications announced while the listener was away are read back.
            self._spawn(self._recheck_quietly())

        while True:
            try:
                await self.registry.listen(self.server_id, on_event, on_subscribed)
            except Exception:  # listen() only returns by cancellation; anything else: log and resubscribe
                _reraise_if_cancelling()
                log.exception("drain/takeover subscription failed; resubscribing")
                await asyncio.sleep(LISTEN_RETRY_S)

    # ------------------------------------------------------------------ drain

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tell_reconnect(self, conn: Connection, retry_after_ms: int) -> None:
        self.reconnects_sent.append((time.monotonic(), conn.conn_id))
        await self._send(conn, protocol.reconnect("server_draining", retry_after_ms))
        await self._close_conn(conn, protocol.CLOSE_SERVICE_RESTART, "server draining")
        with contextlib.suppress(RegistryUnavailable):  # after the close: a slow registry must not delay it
            await self.registry.publish(
                keys.reconnect_channel(conn.user_id),
                protocol.dumps({"type": "reconnect", "userId": conn.user_id, "serverId": self.server_id,
                                "reason": "server_draining", "retryAfterMs": retry_after_ms}),
            )  # fmt: skip

    async def _run_drain(self, run: _DrainRun) -> None:
        try:
            await self._drain_steps(run)
        finally:
            self.metrics.drain_seconds(time.monotonic() - run.started_at)
            seconds = round(time.monotonic() - run.started_at, 3)
            self.metrics.audit(
                "drain_end", server=self.server_id, source=run.source, seconds=seconds, left=len(self.connections)
            )
            run.done.set()

    async def _drain_steps(self, run: _DrainRun) -> None:
        with contextlib.suppress(RegistryUnavailable):
            await self.registry.heartbeat(self.server_id, self._heartbeat_body(), self.sv.heartbeat_ttl_s)
        sigterm_planned = self._sigterm.is_set()
        window = drain_plan.effective_window_s(self.sv.drain_window_s, self.sv.shutdown_timeout_s,
                                               sigterm=sigterm_planned)  # fmt: skip
        plan = drain_plan.plan(list(self.connections), window, self.rng)
        start = run.started_at
        deadline = start + plan.deadline_s
        steps = list(plan.steps)
        while steps:
            delay = start + steps[0].at_s - time.monotonic()
            if delay > 0 and not sigterm_planned:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._sigterm.wait()
                if self._sigterm.is_set():
                    sigterm_planned = True
                    window = drain_plan.effective_window_s(self.sv.drain_window_s, self.sv.shutdown_timeout_s,
                                                           sigterm=True)  # fmt: skip
                    plan = drain_plan.plan([s.conn_id for s in steps], window, self.rng)
                    start = time.monotonic()
                    deadline = min(deadline, start + plan.deadline_s)
                    steps = list(plan.steps)
                continue
            if delay > 0:
                await asyncio.sleep(delay)
            step = steps.pop(0)
            conn = self.connections.get(step.conn_id)
            if conn is not None and not conn.closing:
                self._spawn(self._tell_reconnect(conn, step.retry_after_ms))
        while self.connections and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded by the deadline
            await asyncio.sleep(0.02)
        for conn in list(self.connections.values()):
            conn.closing = False
            self._spawn(self._close_conn(conn, protocol.CLOSE_SERVICE_RESTART, "drain deadline"))
