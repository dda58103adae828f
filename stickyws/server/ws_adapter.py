"""The WebSocket adapter: the listener, and one asyncio protocol per TCP connection, from the HTTP request to the close.

With :mod:`stickyws.server.ws_connection`, the only modules that talk to sockets. This module holds the
listener (:class:`RunningServer`), what its connections share and the keepalive (:class:`_Pinger`); each
connection reads the request head (:mod:`stickyws.server.http_head`), answers the plain routes, turns an
upgrade into a :class:`~stickyws.server.core.HandshakeRequest`, and after the 101 reads and writes frames
(:mod:`stickyws.server.ws_frames`) for the core. Each connection is one
:class:`~stickyws.server.ws_connection.WebSocketConnection`: the socket's protocol and the core's
:class:`~stickyws.server.core.Transport` at once, with no task while it is idle (bench/findings.md:
the WebSocket layer's objects were most of the memory per idle connection).

Routes (one port): ``GET /ws`` with an upgrade (admit, 101 or the core's 4xx/5xx), ``GET
/ws?preflight=1`` without one (what the upgrade would get), other ``GET /ws`` 426, ``OPTIONS /ws``
(CORS), the files of :data:`STATIC_FILES`, ``GET <health_check_path>``, ``POST /stickyws/drain-self``
from a loopback peer (the Kubernetes preStop drain, :mod:`stickyws.server.prestop`). Plain responses close the
connection. ``HEAD`` is answered like ``GET`` without the body.

Deliberate choices
    * Limits before anything else: the request line, each header line, the head and the header count
      (:mod:`~stickyws.server.http_head`), then ``handshake_timeout_s`` for the whole request: a
      client over a limit or too slow gets one log line and a 4xx, never a traceback.
    * A connection's messages are handled one at a time, in order, by a task started by the first
      message; it then waits for the next one on a future (cheaper than a task per message) until the
      connection is pinged, i.e. idle for ``ping_interval_s``. Pings are answered and pongs noted as
      they arrive (a busy handler does not delay them). Past :data:`INBOX_PAUSE_BYTES` of waiting
      messages the socket stops being read.
    * Keepalive is the server's: every ``ping_interval_s`` (``None``: no pings) it pings; no pong
      within ``ping_timeout_s`` closes with 1011. One task per server does it (:class:`_Pinger`).
    * Oversized messages (declared, reassembled or inflated) close with 1009, preceded by an ``error``
      frame (:data:`stickyws.protocol.ERR_TOO_BIG`) and with a reason; binary frames with 1003.
    * A protocol violation (a :class:`~stickyws.server.ws_frames.FrameError`, 1009 included) FAILS the
      connection (RFC 6455 7.1.7), as python-websockets does: the messages that came before it are
      handled, the close frame is sent, and the TCP connection is ended at once (FIN; what still
      arrives is discarded, and the socket is dropped when the peer closes or after
      :data:`CLOSE_TIMEOUT_S`), with no wait for the peer's close frame. Other closes (going away
      1001, draining 1012, 1003, 1011 ...) are closing handshakes: the peer's close frame is awaited.
    * Writes queued in one event-loop iteration leave in one socket write at the end of it, in call
      order, without waiting for the socket to drain: the core measures what stays unsent and closes
      slow consumers itself.
    * permessage-deflate follows the ``permessage_deflate`` setting (off by default: memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Sequence
from importlib import resources
from typing import Any

from stickyws import protocol
from stickyws.server.core import Connection, ServerCore, origin_warning
from stickyws.server.preflight import PREFLIGHT_QUERY
from stickyws.server.ws_connection import CLOSE_TIMEOUT_S, INBOX_PAUSE_BYTES, WebSocketConnection

__all__ = [
    "CLOSE_TIMEOUT_S",
    "INBOX_PAUSE_BYTES",
    "LISTEN_BACKLOG",
    "PREFLIGHT_QUERY",
    "STATIC_FILES",
    "STOP_TIMEOUT_S",
    "ListenerContext",
    "RunningServer",
    "WebSocketConnection",
    "warn_about_origins",
]

log = logging.getLogger("stickyws.server")

#: Pending connections the listening socket queues. 128 overflowed in bursts of 200 simultaneous
#: connects (870-942 overflows per 10,000, each a 10 s stall; bench/findings.md): a reconnect storm is
#: exactly such a burst. The kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 1024
#: How long :meth:`RunningServer.stop` waits for the connections' last callbacks.
STOP_TIMEOUT_S = 2.0

#: Files of ``stickyws/static`` served at ``/<name>``, with their content types.
STATIC_FILES = {
    "stickyws-client.js": "text/javascript",
    "stickyws-client.d.ts": "application/typescript",
    "stickyws-demo.html": "text/html",
}


class ListenerContext:
    """What every connection of one listener shares."""

    def __init__(self, core: ServerCore, accepting: Callable[[], bool]) -> None:
        self.core = core
        self.accepting = accepting
        self.loop = asyncio.get_running_loop()
        self.pinger = _Pinger(core)
        self.connections: set[WebSocketConnection] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.dirty: list[WebSocketConnection] = []
        self.flush_scheduled = False
        self.max_message_bytes: int = core.sv.max_message_bytes
        self.handshake_timeout_s: float = core.sv.handshake_timeout_s
        self.deflate: bool = core.sv.permessage_deflate
        self.health_path: str = core.settings.target_group.health_check_path
        folder = resources.files("stickyws") / "static"
        self.static = {f"/{name}": ((folder / name).read_bytes(), ctype) for name, ctype in STATIC_FILES.items()}

    def flush_soon(self, conn: WebSocketConnection) -> None:
        """Write ``conn``'s queued frames at the end of this loop iteration: one callback for all the
        connections written to in it, not one per connection."""
        self.dirty.append(conn)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush_all)

    def flush_all(self) -> None:
        self.flush_scheduled = False
        dirty, self.dirty = self.dirty, []
        for conn in dirty:
            conn.flush()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


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
        self.idle: dict[Any, Connection] = {}
        self.awaiting: dict[Any, Connection] = {}
        self.task: asyncio.Task[None] | None = None
        self.violations: set[asyncio.Task[None]] = set()

    def add(self, transport: Any, conn: Connection) -> None:
        """Start pinging ``transport`` (anything with ``next_ping``, ``pong_due`` and ``ping()``)."""
        interval = self.core.sv.ping_interval_s
        if interval is None:
            return
        transport.next_ping = asyncio.get_running_loop().time() + interval
        self.idle[transport] = conn
        if self.task is None:
            self.task = asyncio.create_task(self.run())

    def discard(self, transport: Any) -> None:
        self.idle.pop(transport, None)
        self.awaiting.pop(transport, None)

    def on_pong(self, transport: Any) -> None:
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
                conn = self.idle.pop(transport)
                transport.pong_due = now + timeout
                self.awaiting[transport] = conn
                transport.ping()

    async def stop(self) -> None:
        """Cancel the ping loop and any close it started (idempotent); called when the listener stops."""
        tasks = [t for t in (self.task, *self.violations) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.task = None
        self.idle.clear()
        self.awaiting.clear()


def warn_about_origins(allowed_origins: Sequence[str], host: str) -> None:
    """Log :func:`~stickyws.server.core.origin_warning` once at startup when it applies."""
    text = origin_warning(allowed_origins, host)
    if text is not None:
        log.warning(text)


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
        self.publish_port = core.settings.delivery.publish_port if publish_port is None else publish_port
        self._server: asyncio.Server | None = None
        self._ctx: ListenerContext | None = None
        self._publish: Any = None
        self._stopped = False

    def _accepting(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self) -> RunningServer:
        """Start the core, then bind and accept (raises ``OSError`` when the port is taken).

        The core first: it answers handshakes only once its listener holds the drain, takeover and push
        channels, so the port opens when the server can serve (a client that waits for the port is not
        turned away with 503)."""
        await self.core.start()
        ctx = self._ctx = ListenerContext(self.core, self._accepting)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: WebSocketConnection(ctx), self.host, self.port, backlog=LISTEN_BACKLOG
            )
            if self.publish_key and self.publish_port:
                # Only when the endpoint is on (start-up time and memory: it loads aiohttp's server).
                from stickyws.server.publish_endpoint import PublishListener

                self._publish = PublishListener(self.core, self.publish_key, self.host, self.publish_port)
                await self._publish.start()
        except BaseException as exc:
            await self._close_listeners()
            await self.core.close()
            raise exc  # named: the compiled build loses a bare raise's exception across an await
        warn_about_origins(self.core.sv.allowed_origins, self.host)
        return self

    async def _close_listeners(self) -> None:
        if self._publish is not None:
            await self._publish.stop()
        if self._server is not None:
            self._server.close()

    async def stop(self) -> None:
        """Close the core (1001 to whatever is left) and the listener."""
        if self._stopped:
            return
        self._stopped = True
        await self._close_listeners()
        await self.core.close()
        ctx = self._ctx
        if ctx is None:
            return
        await ctx.pinger.stop()
        for conn in list(ctx.connections):  # requests still being read or admitted
            conn._abort()
        if ctx.tasks:
            await asyncio.wait(list(ctx.tasks), timeout=STOP_TIMEOUT_S)

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT start a drain whose window fits in ``shutdown_timeout_s``."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig.name.lower())

    def _on_signal(self, name: str) -> None:
        self.core.begin_drain(name, sigterm=True)
