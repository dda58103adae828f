"""Shared helpers for the server tests: fast settings, in-process servers, real aiohttp clients."""

from __future__ import annotations

import asyncio
import io
import json
import os
import struct
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from stickyws import protocol
from stickyws.localproc import free_port
from stickyws.registry.interfaces import Registry
from stickyws.server import ws_frames
from stickyws.server.app import ServerConfig, build_core
from stickyws.server.auth import TokenVerifier
from stickyws.server.handler import Handler, echo_handler
from stickyws.server.ws_adapter import RunningServer
from stickyws.settings import Settings

SECRET = "test-signing-key-0123456789-abcdefghijklmnop"
AUDIENCE = "stickyws"
VERIFIER = TokenVerifier(SECRET, AUDIENCE)

#: Short timings so every test stays well under a second or two.
FAST: dict[str, Any] = {
    "drain_window_s": 1,
    "shutdown_timeout_s": 3,
    "heartbeat_interval_s": 0.2,
    "heartbeat_ttl_s": 2,
    "routing_ttl_s": 60,
    "session_ttl_s": 60,
}


def fast(**overrides: Any) -> Settings:
    """Default settings with :data:`FAST` timings and ``overrides`` on top (checked)."""
    settings = Settings().with_overrides({**FAST, **overrides})
    settings.check()
    return settings


def token(user: str, ttl_s: int = 600) -> str:
    """A valid connection token for ``user``."""
    return VERIFIER.issue(user, ttl_s)


def run(coro: Coroutine[Any, Any, Any], timeout_s: float = 15.0) -> Any:
    """Run ``coro`` on a fresh loop with a hard timeout."""

    async def bounded() -> Any:
        async with asyncio.timeout(timeout_s):
            return await coro

    return asyncio.run(bounded())


@asynccontextmanager
async def server(
    settings: Settings | None = None,
    *,
    redis_url: str | None = None,
    server_id: str = "srv-a",
    handler: Handler = echo_handler,
    registry: Registry | None = None,
) -> AsyncIterator[RunningServer]:
    """A real server on a free loopback port; metrics go to ``rs.core.metrics.out`` (a StringIO)."""
    config = ServerConfig(settings or fast(), SECRET, redis_url, server_id, None, False)
    core = build_core(config, handler=handler, registry=registry)
    core.metrics.out = io.StringIO()
    rs = await RunningServer(core, "127.0.0.1", free_port()).start()
    try:
        yield rs
    finally:
        await rs.stop()


def url(rs: RunningServer, path: str = protocol.WS_PATH, **query: str) -> str:
    """``http://127.0.0.1:PORT/path?query`` of ``rs``."""
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return f"http://127.0.0.1:{rs.port}{path}" + (f"?{q}" if q else "")


async def connect(
    http: aiohttp.ClientSession,
    rs: RunningServer,
    user: str,
    *,
    resume: str | None = None,
    last_seq: int | None = None,
    since: str | None = None,
    **kw: Any,
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    """Open a WebSocket as ``user`` (optionally resuming, with topic positions ``since``) and read its
    ``connected`` frame."""
    query = {"token": token(user)}
    if since is not None:
        query[protocol.SINCE_QUERY] = urllib.parse.quote(since)
    if resume:
        query["resume"] = resume
    if last_seq is not None:
        query[protocol.LAST_SEQ_QUERY] = str(last_seq)
    ws = await http.ws_connect(url(rs, **query), protocols=[protocol.SUBPROTOCOL], **kw)
    first = json.loads(await recv_text(ws))
    assert first["type"] == "connected"
    return ws, first


async def recv_text(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 3.0) -> str:
    """The next text frame (fails on anything else)."""
    msg = await ws.receive(timeout=timeout_s)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    text: str = msg.data
    return text


async def recv_json(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 3.0) -> dict[str, Any]:
    """The next frame as JSON."""
    body: dict[str, Any] = json.loads(await recv_text(ws, timeout_s))
    return body


async def send(ws: aiohttp.ClientWebSocketResponse, msg_id: int, data: Any) -> None:
    """Send a ``send`` frame."""
    await ws.send_str(protocol.ClientMessage("send", msg_id, data=data).to_json())


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 3.0, step_s: float = 0.02) -> None:
    """Wait until ``check()`` is true, or fail after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(step_s)


def link_replica(primary_url: str, replica_url: str, *, timeout_s: float = 10.0) -> None:
    """Make the redis-server at ``replica_url`` a replica of the one at ``primary_url``; return once the
    replica's link is up and the primary counts it online (a ``WAIT`` from then on can be answered by it)."""
    import time

    import redis

    primary, replica = redis.Redis.from_url(primary_url), redis.Redis.from_url(replica_url)
    try:
        host, port = urllib.parse.urlsplit(primary_url).hostname, urllib.parse.urlsplit(primary_url).port
        replica.replicaof(host, port)
        deadline = time.monotonic() + timeout_s
        while True:  # bounded by the deadline: a few round trips
            linked = replica.info("replication").get("master_link_status") == "up"
            listed = primary.info("replication").get("slave0", {})
            online = linked and isinstance(listed, dict) and listed.get("state") == "online"
            if online and int(primary.execute_command("WAIT", 1, 100)) >= 1:  # it has acknowledged an offset
                return
            assert time.monotonic() < deadline, f"{replica_url} did not become an online replica within {timeout_s} s"
            time.sleep(0.02)
    finally:
        primary.close()
        replica.close()


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True) -> bytes:
    """A WebSocket frame as a client sends it: ``rsv`` the reserved bits (0x40, 0x20, 0x10), masked with a random
    key unless ``masked`` is off."""
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", first, mask_bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + ws_frames._unmask_python(payload, key)
