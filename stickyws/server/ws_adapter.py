"""The aiohttp adapter: HTTP routes, the upgrade, keepalive pings, and the process lifecycle.

The only module that imports aiohttp. It turns requests into
:class:`~stickyws.server.core.HandshakeRequest`, upgrades accepted ones, and feeds frames to the core.

Deliberate choices
    * ``compress`` follows ``permessage_deflate`` (off by default: memory per connection).
    * Keepalive is ours, not aiohttp's ``heartbeat``: aiohttp's closes a silent peer with 1006 and
      no close frame (aiohttp 3.14 ``_handle_ping_pong_exception``), while stickyws.v1 promises 1011.
      Every ``ping_interval_s`` (``None``: no pings) the server pings; no pong within
      ``ping_timeout_s`` closes with 1011. One task per server does it for every connection
      (:class:`_Pinger`). ``autoping`` is off so pongs reach us (pings are answered here).
    * Oversized messages: aiohttp stops reading at ``max_message_bytes`` and closes with 1009; the
      close is preceded by an ``error`` frame (:data:`stickyws.protocol.ERR_TOO_BIG`) and carries a reason.
    * One frame at a time per connection: a handler that blocks delays that connection's pongs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import struct
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from stickyws import protocol
from stickyws.server.core import (
    Admission,
    Connection,
    HandshakeRequest,
    Rejection,
    ServerCore,
    SharedFrame,
    origin_warning,
)

log = logging.getLogger("stickyws.server")

#: Query flag of the pre-flight: ``GET /ws?preflight=1`` without an upgrade answers what the upgrade would.
PREFLIGHT_QUERY = "preflight"
#: How long a close handshake waits for the peer's close frame.
CLOSE_TIMEOUT_S = 2.0
#: Pending connections the listening socket queues. aiohttp's default (128) overflowed in bursts of
#: 200 simultaneous connects (870-942 overflows per 10,000, each a 10 s stall; bench/findings.md): a
#: reconnect storm is exactly such a burst. The kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 1024
#: How long aiohttp waits for request handlers when the runner is cleaned up.
RUNNER_SHUTDOWN_TIMEOUT_S = 2.0
_CORE: web.AppKey[ServerCore] = web.AppKey("stickyws_core", ServerCore)
_ACCEPTING: web.AppKey[Callable[[], bool]] = web.AppKey("stickyws_accepting", Callable[[], bool])  # type: ignore[arg-type]
_PINGER: web.AppKey[_Pinger] = web.AppKey("stickyws_pinger", "_Pinger")  # type: ignore[arg-type]


#: RFC 6455 headers of an unmasked final text frame (server to client): payload < 126, < 65536, larger.
_HEAD1 = struct.Struct("!BB").pack
_HEAD2 = struct.Struct("!BBH").pack
_HEAD3 = struct.Struct("!BBQ").pack
_FIN_TEXT = 0x81


class _WebSocket(web.WebSocketResponse):
    """A WebSocketResponse that explains a 1009 close with an ``error`` frame and a reason, and writes
    the frames its transport still holds before any close frame."""

    limit_bytes = 0
    flush_pending: Callable[[], None] | None = None

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if self.flush_pending is not None:
            self.flush_pending()
        if code == WSCloseCode.MESSAGE_TOO_BIG and not message and not self.closed:
            text = f"message larger than {self.limit_bytes} bytes"
            with contextlib.suppress(Exception):
                await self.send_str(protocol.error(protocol.ERR_TOO_BIG, text))
            message = text.encode()
        return await super().close(code=code, message=message, drain=drain)


class AiohttpTransport:
    """:class:`~stickyws.server.core.Transport` over an aiohttp WebSocketResponse.

    :meth:`write` frames an uncompressed text frame itself (RFC 6455, unmasked, final) and queues it;
    the frames queued in one event-loop iteration go to the socket in one write at the end of it (a
    reply and its ack: one ``send`` instead of two), in call order, without waiting for the socket to
    drain: the core measures what stays unsent (the queue included) and closes slow consumers itself.
    A close writes the queue first. With permessage-deflate the frame goes through ``send_str`` in
    order (the compressor is stateful).
    """

    __slots__ = ("_pending", "_pending_bytes", "_sends", "next_ping", "pong_due", "ws")

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.next_ping = 0.0
        self.pong_due: float | None = None
        self._sends: asyncio.Task[None] | None = None
        self._pending: list[bytes] | None = None
        self._pending_bytes = 0
        if isinstance(ws, _WebSocket):
            ws.flush_pending = self.flush

    async def send_text(self, text: str) -> None:
        self.flush()
        await self.ws.send_str(text)

    def write(self, text: str) -> int:
        writer = self.ws._writer  # the adapter owns the aiohttp specifics
        if writer is None or self.ws.closed or writer.transport.is_closing():
            raise ConnectionError("socket is closed")
        if writer.compress:
            self._sends = asyncio.ensure_future(self._send_after(self._sends, text))
            return writer.transport.get_write_buffer_size()
        data = text.encode()
        n = len(data)
        head = (
            _HEAD1(_FIN_TEXT, n) if n < 126 else _HEAD2(_FIN_TEXT, 126, n) if n < 65536 else _HEAD3(_FIN_TEXT, 127, n)
        )
        pending = self._pending
        if pending is None:
            self._pending = [head, data]
            asyncio.get_running_loop().call_soon(self.flush)
        else:
            pending.append(head)
            pending.append(data)
        self._pending_bytes += len(head) + n
        return writer.transport.get_write_buffer_size() + self._pending_bytes

    def write_shared(self, frame: SharedFrame) -> int:
        """:meth:`write` of a frame many sockets get: framed once (``frame.wire``), written at once when
        nothing is queued (a fan-out schedules no flush per socket), else queued behind what is."""
        writer = self.ws._writer
        if writer is None or self.ws.closed or writer.transport.is_closing():
            raise ConnectionError("socket is closed")
        if writer.compress:
            return self.write(frame.text)
        wire = frame.wire
        if wire is None:
            data = frame.text.encode()
            n = len(data)
            head = (
                _HEAD1(_FIN_TEXT, n)
                if n < 126
                else _HEAD2(_FIN_TEXT, 126, n)
                if n < 65536
                else _HEAD3(_FIN_TEXT, 127, n)
            )
            wire = frame.wire = head + data
        pending = self._pending
        if pending is None:
            writer.transport.write(wire)
            return writer.transport.get_write_buffer_size()
        pending.append(wire)
        self._pending_bytes += len(wire)
        return writer.transport.get_write_buffer_size() + self._pending_bytes

    def flush(self) -> None:
        """Write the queued frames now (idempotent; dropped when the socket is already closing)."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        self._pending_bytes = 0
        writer = self.ws._writer
        if writer is not None and not writer.transport.is_closing():
            writer.transport.write(b"".join(pending))

    async def _send_after(self, previous: asyncio.Task[None] | None, text: str) -> None:
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(text)

    async def close(self, code: int, reason: str) -> None:
        self.flush()
        await self.ws.close(code=code, message=reason.encode()[:123])


def _rejection_response(rejection: Rejection) -> web.Response:
    headers = {"Retry-After": str(rejection.retry_after_s)} if rejection.retry_after_s is not None else {}
    return web.Response(
        status=rejection.status, text=rejection.body(), content_type="application/json", headers=headers
    )


class _Pinger:
    """One task pings every open connection: per connection two floats, no task, Event or timer.

    Connections wait in two dicts kept in due order (insertion order; every deadline is "now + a
    constant"): ``idle`` by the time of the next ping, ``awaiting`` by the time its pong is due. A tick
    walks only the due ones, so its cost follows the pings it sends, not the connections open.
    Measured (bench/findings.md): a keepalive task per connection cost about 2.6 KB per idle
    connection; this loop ticks every tenth of min(ping interval, ping timeout).
    """

    def __init__(self, core: ServerCore) -> None:
        self.core = core
        self.idle: dict[AiohttpTransport, Connection] = {}
        self.awaiting: dict[AiohttpTransport, Connection] = {}
        self.task: asyncio.Task[None] | None = None
        self.violations: set[asyncio.Task[None]] = set()

    def add(self, transport: AiohttpTransport, conn: Connection) -> None:
        interval = self.core.sv.ping_interval_s
        if interval is None:
            return
        transport.next_ping = asyncio.get_running_loop().time() + interval
        self.idle[transport] = conn
        if self.task is None:
            self.task = asyncio.create_task(self.run())

    def discard(self, transport: AiohttpTransport) -> None:
        self.idle.pop(transport, None)
        self.awaiting.pop(transport, None)

    def on_pong(self, transport: AiohttpTransport) -> None:
        interval = self.core.sv.ping_interval_s
        transport.pong_due = None
        conn = self.awaiting.pop(transport, None)
        if interval is None or conn is None:
            return
        transport.next_ping = asyncio.get_running_loop().time() + interval
        self.idle[transport] = conn  # at the end: the latest deadline

    async def run(self) -> None:
        interval, timeout = self.core.sv.ping_interval_s, self.core.sv.ping_timeout_s
        assert interval is not None
        tick = max(0.05, min(interval, timeout) / 10)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            while self.awaiting:
                transport = next(iter(self.awaiting))
                if transport.pong_due is not None and now < transport.pong_due:
                    break
                conn = self.awaiting.pop(transport)
                task = asyncio.create_task(
                    self.core.on_violation(
                        conn, protocol.CLOSE_INTERNAL_ERROR, "ping_timeout", f"no pong within {timeout:g} s"
                    )
                )
                self.violations.add(task)
                task.add_done_callback(self.violations.discard)
            due = []
            for transport in self.idle:
                if now < transport.next_ping:
                    break
                due.append(transport)
            for transport in due:
                idle: Connection | None = self.idle.pop(transport, None)
                if idle is None:  # closed while an earlier ping of this tick was written
                    continue
                transport.pong_due = now + timeout
                self.awaiting[transport] = idle
                try:
                    await transport.ws.ping()
                except (ConnectionError, RuntimeError):
                    self.awaiting.pop(transport, None)

    async def stop(self) -> None:
        """Cancel the ping loop and any close it started (idempotent); called when the app shuts down."""
        tasks = [t for t in (self.task, *self.violations) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.task = None
        self.idle.clear()
        self.awaiting.clear()


async def ws_handler(request: web.Request) -> web.StreamResponse:
    """``GET /ws``: 426 without an upgrade, else admit, upgrade and run the connection."""
    core = request.app[_CORE]
    if request.headers.get("Upgrade", "").lower() != "websocket" and PREFLIGHT_QUERY in request.query:
        return preflight_response(core, request)
    if request.headers.get("Upgrade", "").lower() != "websocket":
        rejection = Rejection(426, protocol.REJECT_UPGRADE_REQUIRED, "send a WebSocket upgrade (Upgrade: websocket)")
        core.metrics.reject(rejection.code)
        return web.Response(
            status=426, text=rejection.body(), content_type="application/json", headers={"Upgrade": "websocket"}
        )
    offered = tuple(p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip())
    req = HandshakeRequest(request.query, request.headers, offered, request.remote)
    decision = await core.admit(req)
    if isinstance(decision, Rejection):
        return _rejection_response(decision)
    assert isinstance(decision, Admission)
    ws = _WebSocket(
        protocols=(protocol.SUBPROTOCOL,),
        compress=core.sv.permessage_deflate,
        max_msg_size=core.sv.max_message_bytes,
        autoping=False,
        heartbeat=None,
        timeout=CLOSE_TIMEOUT_S,
    )
    ws.limit_bytes = core.sv.max_message_bytes
    try:
        await ws.prepare(request)
    except BaseException:
        await core.abandon(decision)
        raise
    transport = AiohttpTransport(ws)
    conn = await core.open(decision, transport)
    del req, decision, offered  # the handler frame lives as long as the connection: keep only what it needs
    pinger = request.app[_PINGER]
    pinger.add(transport, conn)
    try:
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                try:
                    await core.on_text(conn, msg.data)
                except Exception:  # a registry reply we did not expect: end this connection, keep the server
                    log.exception("message handling failed for %s", conn.conn_id)
                    await core.on_violation(
                        conn, protocol.CLOSE_INTERNAL_ERROR, protocol.ERR_INTERNAL, "server error: reconnect"
                    )
                    break
            elif msg.type is WSMsgType.BINARY:
                await core.on_violation(
                    conn, protocol.CLOSE_UNSUPPORTED_DATA, protocol.ERR_BINARY,
                    "binary frames are not supported: send JSON text frames",
                )  # fmt: skip
                break
            elif msg.type is WSMsgType.PING:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.pong(msg.data)
            elif msg.type is WSMsgType.PONG:
                pinger.on_pong(transport)
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                break
    finally:
        pinger.discard(transport)
        await core.on_closed(conn)
    return ws


def _cors_headers(request: web.Request) -> dict[str, str]:
    """CORS headers echoing the request's ``Origin`` (none without one).

    Any origin may read a pre-flight answer: the origin is checked before the token, so a refused
    origin learns only that it is refused (or that the server is draining or full), never whether a
    token is valid.
    """
    origin = request.headers.get("Origin")
    if not origin:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": "Retry-After",
        "Vary": "Origin",
    }


def preflight_response(core: ServerCore, request: web.Request) -> web.Response:
    """``GET /ws?preflight=1`` without an upgrade: 200 ``{"ok": true}`` or the refusal the upgrade would get."""
    offered = tuple(p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip())
    rejection = core.preflight(HandshakeRequest(request.query, request.headers, offered, request.remote))
    headers = {**_cors_headers(request), "Cache-Control": "no-store"}
    if rejection is None:
        return web.json_response({"ok": True}, headers=headers)
    if rejection.retry_after_s is not None:
        headers["Retry-After"] = str(rejection.retry_after_s)
    return web.Response(
        status=rejection.status, text=rejection.body(), content_type="application/json", headers=headers
    )


async def preflight_options_handler(request: web.Request) -> web.Response:
    """``OPTIONS /ws``: the CORS pre-flight a cross-origin ``fetch`` sends before a pre-flight GET with a token."""
    headers = {
        **_cors_headers(request),
        "Access-Control-Allow-Methods": "GET",
        "Access-Control-Allow-Headers": f"Authorization, {protocol.RESUME_HEADER}",
        "Access-Control-Max-Age": "600",
    }
    return web.Response(status=204, headers=headers)


#: Files of ``stickyws/static`` served at ``/<name>``, with their content types.
STATIC_FILES = {
    "stickyws-client.js": "text/javascript",
    "stickyws-client.d.ts": "application/typescript",
    "stickyws-demo.html": "text/html",
}


def add_static_routes(app: web.Application) -> None:
    """``GET /stickyws-client.js``, ``/stickyws-client.d.ts`` (the browser client) and ``/stickyws-demo.html``."""
    from importlib import resources

    folder = resources.files("stickyws") / "static"
    for name, content_type in STATIC_FILES.items():
        body = (folder / name).read_bytes()

        async def serve(_: web.Request, body: bytes = body, content_type: str = content_type) -> web.Response:
            headers = {"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"}
            return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)

        app.router.add_get(f"/{name}", serve)


async def health_handler(request: web.Request) -> web.Response:
    """``/health``: 200 while serving and accepting, 503 otherwise; JSON body from the core."""
    status, body = request.app[_CORE].health(request.app[_ACCEPTING]())
    return web.json_response(body, status=status)


def build_app(core: ServerCore, accepting: Callable[[], bool] = lambda: True) -> web.Application:
    """The aiohttp application: ``GET /ws`` (upgrade, pre-flight), ``OPTIONS /ws`` (CORS), the static
    files of :data:`STATIC_FILES` and ``GET <health_check_path>``."""
    app = web.Application()
    app[_CORE] = core
    app[_ACCEPTING] = accepting
    pinger = app[_PINGER] = _Pinger(core)

    async def stop_pinger(_: web.Application) -> None:
        await pinger.stop()

    app.on_shutdown.append(stop_pinger)
    app.router.add_get(protocol.WS_PATH, ws_handler)
    app.router.add_route("OPTIONS", protocol.WS_PATH, preflight_options_handler)
    add_static_routes(app)
    app.router.add_get(core.settings["health_check_path"], health_handler)
    return app


def warn_about_origins(core: ServerCore, host: str) -> None:
    """Log :func:`~stickyws.server.core.origin_warning` once at startup when it applies."""
    text = origin_warning(core.sv.allowed_origins, host)
    if text is not None:
        log.warning(text)


def build_publish_app(core: ServerCore, key: str) -> web.Application:
    """The publish endpoint (:mod:`stickyws.publish.http`) on the core's registry and settings."""
    from stickyws.publish import Publisher
    from stickyws.publish import http as publish_http

    publisher = Publisher(registry=core.registry, settings=core.settings)
    limit = core.settings["max_publish_bytes"] + 1024

    async def publish(request: web.Request) -> web.Response:
        refused = publish_http.check_key(request.headers, key)
        if refused is not None:
            return web.json_response(refused[1], status=refused[0])
        if request.content_length is not None and request.content_length > limit:
            status, body = 413, {"error": "too_large", "message": f"request body over {limit} bytes"}
        else:
            try:
                raw = await request.content.read(limit + 1)
            except (ConnectionError, RuntimeError, web.HTTPException):
                raw = b"\xff" * (limit + 1)
            status, body = await publish_http.handle(publisher, raw)
        if status == 200:
            core.metrics.count("Publications")
        return web.json_response(body, status=status)

    app = web.Application(client_max_size=limit + 1)
    app.router.add_post(publish_http.PATH, publish)
    return app


class RunningServer:
    """A server core bound to ``host:port``: ``await start()``, ``await stop()`` (idempotent).

    With a ``publish_key``, the publish endpoint listens on ``host:publish_port`` too (default: the
    ``publish_port`` setting; 0 turns it off).
    """

    def __init__(
        self,
        core: ServerCore,
        host: str,
        port: int,
        *,
        publish_key: str | None = None,
        publish_port: int | None = None,
    ) -> None:
        self.core = core
        self.host = host
        self.port = port
        self.publish_key = publish_key
        self.publish_port = core.settings["publish_port"] if publish_port is None else publish_port
        self._site: web.TCPSite | None = None
        self._runner: web.AppRunner | None = None
        self._publish_runner: web.AppRunner | None = None
        self._stopped = False

    def _accepting(self) -> bool:
        server: Any = getattr(self._site, "_server", None)
        return bool(server is not None and server.is_serving())

    async def start(self) -> RunningServer:
        """Start the core, then bind and accept (raises ``OSError`` when the port is taken).

        The core first: it answers handshakes only once its listener holds the drain, takeover and push
        channels, so the port opens when the server can serve (a client that waits for the port is not
        turned away with 503)."""
        await self.core.start()
        self._runner = web.AppRunner(
            build_app(self.core, self._accepting),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=RUNNER_SHUTDOWN_TIMEOUT_S,
        )
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.port, backlog=LISTEN_BACKLOG)
        try:
            await self._site.start()
            if self.publish_key and self.publish_port:
                self._publish_runner = web.AppRunner(
                    build_publish_app(self.core, self.publish_key), handle_signals=False, access_log=None
                )
                await self._publish_runner.setup()
                await web.TCPSite(self._publish_runner, self.host, self.publish_port).start()
        except BaseException:
            if self._publish_runner is not None:
                await self._publish_runner.cleanup()
            await self._runner.cleanup()
            await self.core.close()
            raise
        warn_about_origins(self.core, self.host)
        return self

    async def stop(self) -> None:
        """Close the core (1001 to whatever is left) and the listener."""
        if self._stopped:
            return
        self._stopped = True
        if self._publish_runner is not None:
            await self._publish_runner.cleanup()
        await self.core.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT start a drain whose window fits in ``shutdown_timeout_s``."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig.name.lower())

    def _on_signal(self, name: str) -> None:
        self.core.begin_drain(name, sigterm=True)
