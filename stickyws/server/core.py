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
from stickyws.server import drain as drain_plan
from stickyws.server.auth import AuthError, TokenVerifier, extract_resume, extract_token, new_session_id, origin_allowed
from stickyws.server.handler import Handler, HandlerContext, HandlerError, echo_handler
from stickyws.server.metrics import Metrics
from stickyws.server.registry import Registry, RegistryUnavailable
from stickyws.server.session import Commit, CommitResult, SessionRecord, SessionState
from stickyws.settings import Settings

log = logging.getLogger("stickyws.server")

#: ``Retry-After`` (seconds) on 503 answers.
RETRY_AFTER_S = 1
#: Pause before resubscribing after an unexpected pub/sub failure.
LISTEN_RETRY_S = 0.5
#: How long close() waits for its background tasks after cancelling them.
LOOP_STOP_TIMEOUT_S = 2.0


def _reraise_if_cancelling() -> None:
    """Raise ``CancelledError`` if this task was cancelled (a library turned the cancellation into an error)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


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


class Transport(Protocol):
    """One open WebSocket as the core sees it."""

    async def send_text(self, text: str) -> None:
        """Send one text frame (raises ``ConnectionError`` when the socket is gone)."""
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
        self._pending = 0
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[Any]] = []
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
        """Start serving: heartbeat loop, pub/sub listener, and a first look for a drain notice."""
        if self.state is not ServerState.STARTING:
            return
        self.state = ServerState.SERVING
        self.metrics.audit("server_start", server=self.server_id, registry=self.registry_kind)
        self._loops.append(asyncio.create_task(self._heartbeat_loop(), name="stickyws-heartbeat"))
        self._loops.append(asyncio.create_task(self._listen(), name="stickyws-listen"))

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

    async def admit(self, req: HandshakeRequest) -> Admission | Rejection:
        """Decide a handshake; on :class:`Admission` the caller must :meth:`open` or :meth:`abandon` it."""
        if self.state is not ServerState.SERVING:
            return self._reject(req, 503, protocol.REJECT_DRAINING, "server is draining: retry", retry=True)
        if len(self.connections) + self._pending >= self.sv.max_connections:
            return self._reject(
                req, 503, protocol.REJECT_AT_CAPACITY, f"server holds {self.sv.max_connections} connections", retry=True
            )
        origin = req.headers.get("Origin")
        if not origin_allowed(origin, self.sv.allowed_origins):
            return self._reject(req, 403, protocol.REJECT_ORIGIN, origin_refusal(origin))
        try:
            user_id = self.verifier.verify(extract_token(req.query, req.headers, req.subprotocols))
        except AuthError as exc:
            if exc.kind == "missing":
                return self._reject(req, 401, protocol.REJECT_MISSING_TOKEN, str(exc))
            return self._reject(req, 403, protocol.REJECT_INVALID_TOKEN, str(exc))
        resume = extract_resume(req.query, req.headers)
        if resume:
            try:
                session_id = self.verifier.verify_resume(user_id, resume)
            except AuthError as exc:
                return self._reject(req, 403, protocol.REJECT_INVALID_RESUME, str(exc), user=user_id)
        else:
            session_id = new_session_id()
        self._pending += 1
        try:
            result = await self.registry.handshake(
                user_id=user_id,
                server_id=self.server_id,
                session_id=session_id,
                resume=bool(resume),
                reject_live_owner=self.sv.connection_policy == "reject",
                routing_ttl_s=self.sv.routing_ttl_s,
                session_ttl_s=self.sv.session_ttl_s,
            )
        except RegistryUnavailable:
            self._needs_reconcile = True
            if self.sv.registry_down_policy == "reject":
                self._pending -= 1
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
        except PermissionError:
            self._pending -= 1
            return self._reject(
                req, 403, protocol.REJECT_INVALID_RESUME, "session belongs to another user", user=user_id
            )
        if not result.claimed or result.session is None:
            self._pending -= 1
            return self._reject(
                req, 409, protocol.REJECT_CONFLICT, f"user is connected to live server {result.previous}", user=user_id
            )
        last_seq = _last_seq(req.query.get(protocol.LAST_SEQ_QUERY)) if result.resumed else None
        reason = "resume" if result.resumed else "new"
        if result.previous not in (None, self.server_id):
            reason += "+takeover"
        self.metrics.audit(
            "route", decision="accept", reason=reason, user=user_id, server=self.server_id,
            previous=result.previous, remote=req.remote, session=session_id,
        )  # fmt: skip
        return Admission(user_id, result.session, result.resumed, result.previous, req.remote, last_seq)

    def preflight(self, req: HandshakeRequest) -> Rejection | None:
        """What :meth:`admit` would answer now, without claiming a route or opening a session.

        ``None``: the handshake would be admitted as far as this server can tell; else the same
        :class:`Rejection` (status, code, ``Retry-After``). Checks, in :meth:`admit`'s order: state
        (503 draining), capacity (503), origin (403), token (401/403), resume token (403), registry
        outage under ``registry_down_policy=reject`` (503). It reads nothing from the registry, so it
        cannot predict a 409 (``connection_policy=reject`` with the user live elsewhere). Counted in
        no metric: it is a question, not a handshake.
        """
        if self.state is not ServerState.SERVING:
            return Rejection(503, protocol.REJECT_DRAINING, "server is draining: retry", RETRY_AFTER_S)
        if len(self.connections) + self._pending >= self.sv.max_connections:
            text = f"server holds {self.sv.max_connections} connections"
            return Rejection(503, protocol.REJECT_AT_CAPACITY, text, RETRY_AFTER_S)
        origin = req.headers.get("Origin")
        if not origin_allowed(origin, self.sv.allowed_origins):
            return Rejection(403, protocol.REJECT_ORIGIN, origin_refusal(origin))
        try:
            user_id = self.verifier.verify(extract_token(req.query, req.headers, req.subprotocols))
        except AuthError as exc:
            if exc.kind == "missing":
                return Rejection(401, protocol.REJECT_MISSING_TOKEN, str(exc))
            return Rejection(403, protocol.REJECT_INVALID_TOKEN, str(exc))
        resume = extract_resume(req.query, req.headers)
        if resume:
            try:
                self.verifier.verify_resume(user_id, resume)
            except AuthError as exc:
                return Rejection(403, protocol.REJECT_INVALID_RESUME, str(exc))
        if not self.registry.available and self.sv.registry_down_policy == "reject":
            return Rejection(503, protocol.REJECT_REGISTRY_DOWN, "registry unavailable: retry", RETRY_AFTER_S)
        return None

    async def abandon(self, admission: Admission) -> None:
        """The upgrade failed after :meth:`admit`: free the slot and the route."""
        self._pending -= 1
        if admission.user_id not in self.by_user:
            await self._release(admission.user_id)

    async def open(self, admission: Admission, transport: Transport) -> Connection:
        """Register an upgraded connection and send its ``connected`` frame."""
        self._pending -= 1
        now = time.monotonic()
        conn = Connection(
            f"c{next(self._ids)}", SessionState.from_record(admission.session), transport, admission.remote, now, now
        )
        conn.session.dirty = self._needs_reconcile
        old = self.by_user.get(conn.user_id)
        self.connections[conn.conn_id] = conn
        self.by_user[conn.user_id] = conn
        self.metrics.count("HandshakesAccepted")
        if admission.resumed:
            self.metrics.count("SessionsResumed")
        if old is not None:
            self._spawn(self._close_conn(old, protocol.CLOSE_TAKEN_OVER, "taken over by a newer connection"))
        if admission.previous_owner not in (None, self.server_id):
            body = protocol.dumps({"userId": conn.user_id, "by": self.server_id})
            with contextlib.suppress(RegistryUnavailable):
                await self.registry.publish(keys.takeover_channel(str(admission.previous_owner)), body)
        s = conn.session
        await self._send(
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
        if admission.last_seq is not None:
            for seq, text in s.replay_after(admission.last_seq):
                await self._send(conn, protocol.message(seq, json.loads(text)))
        if self.state is not ServerState.SERVING:
            self._spawn(self._tell_reconnect(conn, 0))
        return conn

    async def on_closed(self, conn: Connection) -> None:
        """Forget a connection that ended; release its route if no newer one of the user is here."""
        if self.connections.pop(conn.conn_id, None) is None:
            return
        if self.by_user.get(conn.user_id) is conn:
            del self.by_user[conn.user_id]
            await self._release(conn.user_id)

    async def _release(self, user_id: str) -> None:
        try:
            await self.registry.release(user_id, self.server_id)
            self._pending_releases.discard(user_id)
        except RegistryUnavailable:
            self._needs_reconcile = True
            self._pending_releases.add(user_id)

    # ------------------------------------------------------------------ messages

    async def _send(self, conn: Connection, text: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await conn.transport.send_text(text)

    async def on_text(self, conn: Connection, text: str) -> None:
        """Handle one client text frame: parse, dedup, handle, commit, send outputs, acknowledge."""
        self.metrics.count("MessagesIn")
        try:
            msg = protocol.parse_client_message(text)
        except protocol.ProtocolError as exc:
            await self._send(conn, protocol.error(exc.code, str(exc), exc.msg_id))
            return
        if msg.id > protocol.MAX_MESSAGE_ID:
            text = f"id must be at most {protocol.MAX_MESSAGE_ID}"
            await self._send(conn, protocol.error(protocol.ERR_BAD_MESSAGE, text, msg.id))
            return
        session = conn.session
        if session.is_duplicate(msg.id):
            await self._send(conn, protocol.ack(msg.id, duplicate=True))
            return
        outputs: list[Any] = []
        if msg.type == "send":
            ctx = HandlerContext(self.server_id, session.user_id, session.session_id, msg.id,
                                 frozenset(session.subscriptions))  # fmt: skip
            try:
                outputs = list(await self.handler(ctx, msg.data))
            except HandlerError as exc:
                await self._send(conn, protocol.error(exc.code, str(exc), msg.id))
                return
            except Exception:
                log.exception("handler failed on message %s of session %s", msg.id, session.session_id)
                await self._send(conn, protocol.error(protocol.ERR_HANDLER, "the handler failed", msg.id))
                return
            commit = Commit(msg.id, tuple(protocol.dumps_value(data) for data in outputs))
        else:
            commit = Commit(msg.id, (), "add" if msg.type == "subscribe" else "remove", msg.topic)
        result = await self._commit(conn, commit)
        if result.duplicate:
            await self._send(conn, protocol.ack(msg.id, duplicate=True))
            return
        for i, data in enumerate(outputs):
            await self._send(conn, protocol.message(result.first_seq + i, data))
        self.metrics.count("MessagesOut", len(outputs))
        await self._send(conn, protocol.ack(msg.id))

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
            result = await self.registry.commit(
                session.record(), commit, server_id=self.server_id, routing_ttl_s=self.sv.routing_ttl_s,
                session_ttl_s=self.sv.session_ttl_s,
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
        drain_channel = keys.drain_key(self.server_id)
        takeover_channel = keys.takeover_channel(self.server_id)

        async def on_message(channel: str, text: str) -> None:
            if channel == drain_channel:
                try:
                    notice = keys.DrainNotice.from_json(text)
                except ValueError:
                    log.warning("ignored malformed drain notice on %s", channel)
                    return
                if notice.server_id == self.server_id:
                    self.begin_drain(notice.source, notice.reason)
            elif channel == takeover_channel:
                try:
                    body = json.loads(text)
                    user_id, by = str(body["userId"]), str(body["by"])
                except (ValueError, KeyError, TypeError):
                    return
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
            with contextlib.suppress(RegistryUnavailable):
                notice = await self.registry.drain_notice(self.server_id)
                if notice is not None:
                    self.begin_drain(notice.source, notice.reason)

        while True:
            try:
                await self.registry.listen([drain_channel, takeover_channel], on_message, on_subscribed)
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
