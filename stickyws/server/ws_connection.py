"""One TCP connection of the reference server: the asyncio protocol from the HTTP request to the close.

:class:`WebSocketConnection` reads the request head, answers the plain routes (:mod:`~stickyws.server.preflight`
for ``/ws`` without an upgrade), turns an upgrade into a :class:`~stickyws.server.core.HandshakeRequest`, and
after the 101 reads and writes frames for the core; :mod:`stickyws.server.ws_adapter` (the listener) states the
routes and the choices it follows. The module stays one class of about 480 lines: every frame goes through its
methods, which call each other directly on ``self``, and splitting it into helpers would add calls per frame
(the hot path, bench/findings.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, cast

from stickyws import protocol
from stickyws.server import http_head, ws_frames
from stickyws.server.core import Admission, Connection, HandshakeRequest, Rejection, SharedFrame
from stickyws.server.http_head import BadRequest, RequestHead
from stickyws.server.preflight import PREFLIGHT_QUERY, cors_preflight_headers, preflight_response
from stickyws.server.prestop import (
    DELAY_QUERY,
    PRESTOP_PATH,
    drain_after_delay,
    is_loopback_peer,
    prestop_timing,
    requested_delay_s,
)
from stickyws.server.ws_frames import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, FrameError, MessageTooBig

if TYPE_CHECKING:
    from stickyws.server.ws_adapter import ListenerContext

log = logging.getLogger("stickyws.server")

#: How long a close handshake waits for the peer's close frame before the socket is dropped; after a
#: failure, how long a half-closed socket waits for the peer to close its side.
CLOSE_TIMEOUT_S = 2.0
#: Bytes of received messages waiting for the handler past which the socket is no longer read.
INBOX_PAUSE_BYTES = 1 << 20

# Connection states.
_HTTP, _ADMITTING, _OPEN, _CLOSING, _CLOSED = range(5)


class WebSocketConnection(asyncio.Protocol):
    """One TCP connection: the HTTP request, then the upgraded WebSocket as the core's ``Transport``.

    :meth:`write` frames an uncompressed text frame and queues it; the frames queued in one event-loop
    iteration go to the socket in one write at the end of it (a reply and its ack: one ``send``), in
    call order. It returns the bytes still unsent (the queue included). With permessage-deflate each
    frame is compressed as it is queued (the compressor is stateful, so order is kept).
    """

    __slots__ = (
        "_ctx", "_deflate", "_ended", "_failing", "_inbox", "_inbox_bytes", "_paused", "_pending", "_pending_bytes",
        "_reader", "_received", "_timer", "_transport", "_waiter", "_wake", "_worker", "conn", "next_ping", "pong_due",
        "remote", "state",
    )  # fmt: skip

    def __init__(self, ctx: ListenerContext) -> None:
        self._ctx = ctx
        self.state = _HTTP
        self._transport: asyncio.Transport | None = None
        self._received = b""
        self._timer: asyncio.TimerHandle | None = None
        self._reader: ws_frames.FrameReader | None = None
        self._deflate: ws_frames.Deflate | None = None
        self._pending: list[bytes] | None = None
        self._pending_bytes = 0
        self._inbox: deque[tuple[int, str | bytes]] | None = None
        self._inbox_bytes = 0
        self._paused = False
        self._worker: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[tuple[int, str | bytes] | None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        #: A protocol violation was read: no frame is read any more and the close fails the connection.
        self._failing = False
        self.conn: Connection | None = None
        self.remote: str | None = None
        self.next_ping = 0.0
        self.pong_due: float | None = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else None
        self._ctx.connections.add(self)
        self._timer = self._ctx.loop.call_later(self._ctx.handshake_timeout_s, self._handshake_timed_out)

    def data_received(self, data: bytes) -> None:
        if self.state == _OPEN or self.state == _CLOSING:
            self._on_frames(data)
        elif self.state == _HTTP:
            self._on_head(data)
        else:  # admitting: the client sent bytes before the 101; keep them for the frame reader
            self._received += data

    def eof_received(self) -> bool | None:
        return None  # close the transport: a half-closed client is gone

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _CLOSED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._pending = None
        self._ctx.connections.discard(self)
        self._end()

    def _end(self) -> None:
        """The WebSocket is over for the core (a close frame went either way, or the socket is gone):
        tell it once, after the message in hand."""
        conn = self.conn
        if conn is not None and not self._ended:
            self._ended = True
            self.release_worker()
            self._ctx.pinger.discard(self)
            self._ctx.spawn(self._finish(conn))

    # ------------------------------------------------------------------ the request

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self.state == _HTTP:
            self._refuse(BadRequest(408, f"no complete request within {self._ctx.handshake_timeout_s:g} s"))

    def _refuse(self, exc: BadRequest, headers: dict[str, str] | None = None) -> None:
        """Answer a request this server will not serve, with one log line."""
        log.info("refused a request from %s: %s %s", self.remote, exc.status, exc.reason)
        body = protocol.dumps({"error": "bad_request", "message": exc.reason})
        self._respond(http_head.response(exc.status, body, headers=headers))

    def _respond(self, data: bytes, *, head_only: bool = False) -> None:
        """Write a plain response (``head_only``: without its body, for HEAD) and close: the connection
        serves one request."""
        if head_only:
            data = data[: data.index(b"\r\n\r\n") + 4]
        self.state = _CLOSED
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)
            transport.close()

    def _on_head(self, data: bytes) -> None:
        buf = self._received + data if self._received else data
        try:
            end = http_head.head_end(buf)
            if end < 0:
                self._received = buf
                return
            head = http_head.parse_head(buf[:end])
        except BadRequest as exc:
            self._refuse(exc)
            return
        self._received = buf[end:]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self._route(head)
        except BadRequest as exc:
            self._refuse(exc)

    def _route(self, head: RequestHead) -> None:
        ctx = self._ctx
        method, path = head.method, head.path
        get = method in ("GET", "HEAD")
        if path == protocol.WS_PATH:
            if method == "OPTIONS":
                self._respond(http_head.response(204, headers=cors_preflight_headers(head)))
            elif not get:
                self._respond(http_head.response(405, headers={"Allow": "GET, HEAD, OPTIONS"}))
            elif head.wants_upgrade and method == "GET":
                self._start_upgrade(head)
            elif PREFLIGHT_QUERY in head.query:
                self._respond(preflight_response(ctx.core, head, self.remote), head_only=method == "HEAD")
            else:
                rejection = Rejection(
                    426, protocol.REJECT_UPGRADE_REQUIRED, "send a WebSocket upgrade (Upgrade: websocket)"
                )
                ctx.core.metrics.reject(rejection.code)
                self._respond(http_head.response(426, rejection.body(), headers={"Upgrade": "websocket"}))
        elif path in ctx.static and get:
            body, ctype = ctx.static[path]
            headers = {"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"}
            response = http_head.response(200, body, content_type=f"{ctype}; charset=utf-8", headers=headers)
            self._respond(response, head_only=method == "HEAD")
        elif path == ctx.health_path and get:
            status, health = ctx.core.health(ctx.accepting())
            self._respond(http_head.json_response(status, health), head_only=method == "HEAD")
        elif path == ctx.health_path or path in ctx.static:
            self._respond(http_head.response(405, headers={"Allow": "GET, HEAD"}))
        elif path == PRESTOP_PATH:
            self._prestop(head)
        else:
            self._respond(http_head.json_response(404, {"error": "not_found", "message": f"no route {path[:64]}"}))

    def _prestop(self, head: RequestHead) -> None:
        """``POST`` :data:`PRESTOP_PATH` from a loopback peer: the preStop drain, answered when it ends
        (:mod:`stickyws.server.prestop`); any other peer gets 403, any other method 405."""
        if head.method != "POST":
            self._respond(http_head.response(405, headers={"Allow": "POST"}))
            return
        if not is_loopback_peer(self.remote):
            log.info("refused a preStop drain request from %s: not a loopback peer", self.remote)
            body = {"error": "forbidden", "message": "the preStop drain answers loopback peers only"}
            self._respond(http_head.json_response(403, body))
            return
        default_s, grace_s = prestop_timing(self._ctx.core.settings)
        try:
            delay_s = requested_delay_s(head.query.get(DELAY_QUERY), default_s, grace_s)
        except ValueError as exc:
            raise BadRequest(400, str(exc)) from None
        self.state = _ADMITTING  # no second request on this connection; the answer closes it
        self._ctx.spawn(self._drain_self(delay_s, grace_s))

    async def _drain_self(self, delay_s: float, grace_s: float) -> None:
        result = await drain_after_delay(self._ctx.core, delay_s, grace_s)
        self._respond(http_head.json_response(result.status, result.as_json()))

    def _start_upgrade(self, head: RequestHead) -> None:
        headers = head.headers
        if head.version != "HTTP/1.1" or "upgrade" not in (t.lower() for t in headers.tokens("Connection")):
            raise BadRequest(400, "an upgrade needs HTTP/1.1 and Connection: Upgrade")
        if headers.get("Sec-WebSocket-Version") != "13":
            self._refuse(BadRequest(426, "WebSocket version 13 only"), {"Sec-WebSocket-Version": "13"})
            return
        accept = http_head.accept_key(headers.get("Sec-WebSocket-Key", ""))
        if accept is None:
            raise BadRequest(400, "missing or invalid Sec-WebSocket-Key")
        self.state = _ADMITTING
        assert self._transport is not None
        self._transport.pause_reading()
        self._ctx.spawn(self._upgrade(head, accept))

    async def _upgrade(self, head: RequestHead, accept: str) -> None:
        core = self._ctx.core
        offered = head.headers.tokens("Sec-WebSocket-Protocol")
        try:
            decision = await core.admit(HandshakeRequest(head.query, head.headers, offered, self.remote))
        except Exception:
            log.exception("admitting a handshake from %s failed", self.remote)
            self._respond(http_head.response(500, protocol.dumps({"error": "internal", "message": "retry"})))
            return
        if isinstance(decision, Rejection):
            headers = {"Retry-After": str(decision.retry_after_s)} if decision.retry_after_s is not None else {}
            self._respond(http_head.response(decision.status, decision.body(), headers=headers))
            return
        assert isinstance(decision, Admission)
        transport = self._transport
        if self.state != _ADMITTING or transport is None or transport.is_closing():
            await core.abandon(decision)  # the client left while it was admitted
            return
        extra: dict[str, str] = {}
        if protocol.SUBPROTOCOL in offered:
            extra["Sec-WebSocket-Protocol"] = protocol.SUBPROTOCOL
        if self._ctx.deflate:
            negotiated = ws_frames.Deflate.negotiate(head.headers.tokens("Sec-WebSocket-Extensions"))
            if negotiated is not None:
                self._deflate, extra["Sec-WebSocket-Extensions"] = negotiated
        transport.write(http_head.switching_protocols(accept, extra))
        self.state = _OPEN
        self._reader = ws_frames.FrameReader(self._ctx.max_message_bytes, self._deflate)
        self.conn = conn = await core.open(decision, self)  # a fault in it closes with 1011 (core.open)
        early, self._received = self._received, b""
        if self.state == _CLOSED:  # the socket is gone
            self._end()
            return
        transport.resume_reading()  # also when closing: the client's close frame must be read
        if self.state != _OPEN:  # a close began while the connection opened
            self._end()
        else:
            self._ctx.pinger.add(self, conn)
        if early:
            self._on_frames(early)

    # ------------------------------------------------------------------ frames in

    def _on_frames(self, data: bytes) -> None:
        reader = self._reader
        if reader is None:  # after a violation nothing more is read
            return
        failure: FrameError | None = None
        try:
            frames = reader.feed(data)
        except FrameError as exc:  # what came before the violation is handled first
            self._reader = None
            failure, frames = exc, exc.frames
        for opcode, payload in frames:
            if opcode in (OP_TEXT, OP_BINARY):
                if self.state != _OPEN or self.conn is None:
                    continue  # closing: what comes after our close frame is not handled
                wake = self._wake
                if wake is not None:  # the worker waits for the next message: hand it over
                    self._wake = None
                    wake.set_result((opcode, payload))
                elif self._worker is None:
                    self._worker = self._ctx.loop.create_task(self._work(opcode, payload))
                else:
                    inbox = self._inbox
                    if inbox is None:
                        inbox = self._inbox = deque()
                    inbox.append((opcode, payload))
                    self._inbox_bytes += len(payload)
                    if self._inbox_bytes > INBOX_PAUSE_BYTES and not self._paused and self._transport is not None:
                        self._paused = True
                        self._transport.pause_reading()
            elif opcode == OP_PING:
                self._write_raw(ws_frames.control_frame(OP_PONG, payload))  # type: ignore[arg-type]
            elif opcode == OP_PONG:
                self._ctx.pinger.on_pong(self)
            elif opcode == OP_CLOSE:
                self._on_close_frame(payload)  # type: ignore[arg-type]
                return  # a violation after the client's close frame changes nothing: the close stands
        if failure is not None:
            self._on_violation_read(failure)

    def _on_violation_read(self, exc: FrameError) -> None:
        """Fail the connection for ``exc``; a message too big is first explained to the client by the
        core (an ``error`` frame), whose close then fails it."""
        self._failing = True
        if isinstance(exc, MessageTooBig) and self.conn is not None and self.state == _OPEN:
            self._violation(ws_frames.CLOSE_MESSAGE_TOO_BIG, protocol.ERR_TOO_BIG, exc.reason)
            return
        log.info("failing the connection of %s with %s: %s", self.remote, exc.code, exc.reason)
        self._fail(exc.code, exc.reason)

    def _on_close_frame(self, payload: bytes) -> None:
        try:
            code, _ = ws_frames.parse_close(payload)
        except FrameError as exc:
            code = exc.code
        transport = self._transport
        if self.state == _OPEN and transport is not None:  # the client closes: answer with its code
            self.state = _CLOSING
            self.flush()
            transport.write(ws_frames.close_frame(ws_frames.CLOSE_NORMAL if code == 1005 else code))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._end()
        if transport is not None:
            transport.close()

    def _violation(self, close_code: int, error_code: str, message: str) -> None:
        conn = self.conn
        if conn is None or self.state != _OPEN:
            return
        self._ctx.spawn(self._ctx.core.on_violation(conn, close_code, error_code, message))

    async def _work(self, opcode: int, payload: str | bytes) -> None:
        """Handle this message, then those that queued up meanwhile, one at a time."""
        core = self._ctx.core
        conn = self.conn
        assert conn is not None
        try:
            while True:
                if opcode == OP_TEXT:
                    try:
                        await core.on_text(conn, payload)
                    except Exception:  # a registry reply we did not expect: end this connection, keep the server
                        log.exception("message handling failed for %s", conn.conn_id)
                        await core.on_violation(
                            conn, protocol.CLOSE_INTERNAL_ERROR, protocol.ERR_INTERNAL, "server error: reconnect"
                        )
                        return
                else:
                    await core.on_violation(
                        conn, protocol.CLOSE_UNSUPPORTED_DATA, protocol.ERR_BINARY,
                        "binary frames are not supported: send JSON text frames",
                    )  # fmt: skip
                    return
                if self.state != _OPEN and not (self._failing and self._inbox):
                    return  # closed: queued messages are dropped, unless they came before a violation
                if not self._inbox:
                    # Wait for the next message rather than end: a task per message costs more than a
                    # future. An idle connection's worker is let go when it is pinged or closes.
                    self._drop_inbox()  # a method: the compiled build must not assume it stays None past the await
                    wake = self._wake = self._ctx.loop.create_future()
                    item = await wake
                    if item is not None:
                        opcode, payload = item
                        continue
                    if not self._inbox or (self.state != _OPEN and not self._failing):
                        return
                    # let go, but messages queued between the release and now are still this worker's
                inbox = self._inbox
                assert inbox is not None
                opcode, payload = inbox.popleft()
                self._inbox_bytes -= len(payload)
                if self._paused and self._inbox_bytes <= INBOX_PAUSE_BYTES // 2 and self._transport is not None:
                    self._paused = False
                    self._transport.resume_reading()
        finally:
            self._worker = None
            self._wake = None
            if self._inbox is not None and not self._inbox:
                self._inbox = None

    def _drop_inbox(self) -> None:
        self._inbox = None

    def release_worker(self) -> None:
        """End the worker that waits for a next message (an idle connection holds no task)."""
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set_result(None)

    async def _finish(self, conn: Connection) -> None:
        """After the socket closed: let the message in hand finish, then tell the core."""
        worker = self._worker
        if worker is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(worker), CLOSE_TIMEOUT_S)
        self._inbox = None
        await self._ctx.core.on_closed(conn)

    # ------------------------------------------------------------------ frames out (the core's Transport)

    def _check_open(self) -> asyncio.Transport:
        transport = self._transport
        if self.state != _OPEN or transport is None or transport.is_closing():
            raise ConnectionError("socket is closed")
        return transport

    def write(self, text: str) -> int:
        transport = self._check_open()
        data = text.encode()
        deflate = self._deflate
        frame = ws_frames.text_frame(deflate.deflate(data), rsv1=True) if deflate else ws_frames.text_frame(data)
        self._queue(frame)
        return transport.get_write_buffer_size() + self._pending_bytes

    def write_shared(self, frame: SharedFrame) -> int:
        """:meth:`write` of a frame many sockets get: framed once (``frame.wire``), written at once when
        nothing is queued (a fan-out schedules no flush per socket), else queued behind what is."""
        transport = self._check_open()
        if self._deflate is not None:
            return self.write(frame.text)
        wire = frame.wire
        if wire is None:
            wire = frame.wire = ws_frames.text_frame(frame.text.encode())
        pending = self._pending
        if pending is None:
            transport.write(wire)
            return transport.get_write_buffer_size()
        pending.append(wire)
        self._pending_bytes += len(wire)
        return transport.get_write_buffer_size() + self._pending_bytes

    def _write_raw(self, frame: bytes) -> None:
        """Queue a control frame behind what is queued."""
        if self.state == _OPEN:
            self._queue(frame)

    def _queue(self, frame: bytes) -> None:
        """Queue ``frame`` for the end of this loop iteration."""
        pending = self._pending
        if pending is None:
            self._pending = [frame]
            self._ctx.flush_soon(self)
        else:
            pending.append(frame)
        self._pending_bytes += len(frame)

    def flush(self) -> None:
        """Write the queued frames now (idempotent; dropped when the socket is already closing)."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        self._pending_bytes = 0
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def ping(self) -> None:
        """Queue a ping (the pinger's, after ``ping_interval_s`` without a ping: the connection's worker,
        if it waits for a message, is let go too)."""
        self.release_worker()
        self._write_raw(ws_frames.control_frame(OP_PING))

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and ``reason``, wait up to :data:`CLOSE_TIMEOUT_S` for the
        peer's, then drop the socket (idempotent; later calls wait for the first). On a connection that
        read a protocol violation it fails the connection instead (:meth:`_fail`: no wait)."""
        transport = self._transport
        if transport is None or self.state == _CLOSED:
            return
        if self._failing:
            self._fail(code, reason)
            return
        if self.state == _OPEN:
            self.flush()
            self.state = _CLOSING
            self._waiter = self._ctx.loop.create_future()
            transport.write(ws_frames.close_frame(code, reason))
            self._end()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            try:
                await asyncio.wait_for(asyncio.shield(waiter), CLOSE_TIMEOUT_S)
            except TimeoutError:
                transport.abort()  # the peer neither answers nor reads: nothing more can reach it
                return
        if not self._failing:  # a violation read meanwhile has already ended the TCP connection
            transport.close()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the WebSocket connection (RFC 6455 7.1.7; idempotent): send a close frame with ``code``
        (unless one was sent), then end the TCP connection now without waiting for the peer's close
        frame, which is never read. As python-websockets does, the socket is half-closed (FIN) so the
        close frame is not lost to a reset; what the peer still sends is discarded, and the socket is
        dropped when the peer closes its side or after :data:`CLOSE_TIMEOUT_S`."""
        self._failing = True
        self._reader = None
        transport = self._transport
        if transport is None or self.state == _CLOSED or transport.is_closing() or self._timer is not None:
            return
        if self.state == _OPEN:
            self.flush()
            self.state = _CLOSING
            transport.write(ws_frames.close_frame(code, reason))
        self._end()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        if self._paused:  # read on: the peer's EOF must be seen (what arrives is discarded)
            self._paused = False
            transport.resume_reading()
        self._timer = self._ctx.loop.call_later(CLOSE_TIMEOUT_S, self._abort)

    def _abort(self) -> None:
        self.state = _CLOSED
        if self._transport is not None:
            self._transport.abort()
