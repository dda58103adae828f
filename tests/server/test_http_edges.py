"""The adapter on a real socket: plain routes, limits, the handshake timeout, early bytes, close and
ping handshakes, permessage-deflate end to end."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import struct
import zlib
from typing import Any

import aiohttp
import pytest

from stickyws import protocol
from stickyws.server import ws_frames
from tests.server.helpers import client_frame, fast, run, server, token, url


async def _exchange(port: int, data: bytes, *, read_until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 5) if read_until_close else await reader.read(65536)
    finally:
        writer.close()


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def _upgrade_head(path_and_query: str, extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path_and_query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol.SUBPROTOCOL}\r\n"
        f"{extra}\r\n"
    ).encode()


def _server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The (unmasked) frames a server sent, as ``(opcode, payload)``."""
    return [(first & 0x0F, payload) for first, payload in _raw_frames(data)]


def _raw_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The (unmasked) frames a server sent, as ``(first byte, payload)``: FIN, RSV bits and opcode."""
    out = []
    pos = 0
    while pos + 2 <= len(data):
        op, n = data[pos], data[pos + 1] & 0x7F
        head = 2
        if n == 126:
            n, head = struct.unpack_from("!H", data, pos + 2)[0], 4
        elif n == 127:
            n, head = struct.unpack_from("!Q", data, pos + 2)[0], 10
        out.append((op, data[pos + head : pos + head + n]))
        pos += head + n
    return out


def test_over_limit_request_heads_get_a_4xx_and_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """A request line over 8190 bytes gets 414 and a header over the limit 431, each with one log line
    of the stickyws.server logger and no traceback."""

    async def go() -> tuple[bytes, bytes]:
        async with server() as rs:
            long_line = await _exchange(rs.port, b"GET /ws?token=" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
            long_header = await _exchange(rs.port, b"GET /ws HTTP/1.1\r\nCookie: " + b"c" * 9000 + b"\r\n\r\n")
            return long_line, long_header

    with caplog.at_level(logging.INFO, logger="stickyws.server"):
        long_line, long_header = run(go())
    assert (_status(long_line), _status(long_header)) == (414, 431)
    refusals = [r for r in caplog.records if r.name == "stickyws.server" and "refused a request" in r.getMessage()]
    assert [r.getMessage().split(": ", 1)[1][:3] for r in refusals] == ["414", "431"]
    assert all(r.exc_info is None for r in caplog.records)


def test_a_client_that_never_finishes_its_request_gets_408_after_the_handshake_timeout() -> None:
    """Half a request head is answered 408 once handshake_timeout_s has passed, and the socket closes."""

    async def go() -> tuple[bytes, float]:
        async with server(fast(handshake_timeout_s=0.5)) as rs:
            t0 = asyncio.get_running_loop().time()
            raw = await _exchange(rs.port, b"GET /ws HTTP/1.1\r\nHost: x\r\n")
            return raw, asyncio.get_running_loop().time() - t0

    raw, took = run(go())
    assert _status(raw) == 408
    assert 0.45 <= took < 3


def test_plain_routes_head_405_404_and_the_websocket_version() -> None:
    """HEAD /health has the GET's headers and no body, POST /health is 405, an unknown path 404, and an
    upgrade with another WebSocket version 426 naming version 13."""

    async def go() -> list[bytes]:
        async with server() as rs:
            return [
                await _exchange(rs.port, b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"),
                await _exchange(rs.port, b"POST /health HTTP/1.1\r\nHost: x\r\n\r\n"),
                await _exchange(rs.port, b"GET /nowhere HTTP/1.0\r\n\r\n"),
                await _exchange(rs.port, _upgrade_head("/ws").replace(b"Version: 13", b"Version: 8")),
            ]

    head, post, missing, version = run(go())
    assert (_status(head), head.endswith(b"\r\n\r\n"), b"Content-Length: " in head) == (200, True, True)
    assert (_status(post), b"Allow: GET, HEAD" in post) == (405, True)
    assert _status(missing) == 404
    assert (_status(version), b"Sec-WebSocket-Version: 13" in version) == (426, True)


def test_frames_sent_with_the_upgrade_request_are_handled_after_the_connected_frame() -> None:
    """A client that writes its first message in the same packet as the upgrade request gets the 101,
    ``connected``, then the reply and the ack of that message."""

    async def go() -> list[dict[str, Any]]:
        async with server() as rs:
            reader, writer = await asyncio.open_connection("127.0.0.1", rs.port)
            first = client_frame(ws_frames.OP_TEXT, b'{"type":"send","id":1,"data":"early"}')
            writer.write(_upgrade_head(f"/ws?token={token('alice')}") + first)
            data = b""
            async with asyncio.timeout(5):
                while len(_server_frames(data.split(b"\r\n\r\n", 1)[-1])) < 3:
                    data += await reader.read(65536)
            writer.close()
            head, frames = data.split(b"\r\n\r\n", 1)
            assert _status(head) == 101
            return [json.loads(p) for _, p in _server_frames(frames)]

    connected, message, ack = run(go())
    assert (connected["type"], message["data"], ack) == ("connected", "early", {"type": "ack", "id": 1})


def test_pings_are_answered_and_a_client_close_gets_its_code_back() -> None:
    """A client ping gets a pong with its payload; a client close 4100 gets close 4100 back, then the
    socket closes and the server forgets the connection."""

    async def go() -> tuple[list[tuple[int, bytes]], int]:
        async with server() as rs:
            reader, writer = await asyncio.open_connection("127.0.0.1", rs.port)
            writer.write(_upgrade_head(f"/ws?token={token('alice')}"))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert _status(head) == 101
            writer.write(client_frame(ws_frames.OP_PING, b"are you there"))
            writer.write(client_frame(ws_frames.OP_CLOSE, struct.pack("!H", 4100) + b"bye"))
            rest = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            async with asyncio.timeout(3):
                while rs.core.connections:  # noqa: ASYNC110 - bounded by the timeout
                    await asyncio.sleep(0.01)
            return _server_frames(rest), len(rs.core.connections)

    frames, left = run(go())
    assert [op for op, _ in frames] == [ws_frames.OP_TEXT, ws_frames.OP_PONG, ws_frames.OP_CLOSE]
    assert frames[1][1] == b"are you there"
    assert ws_frames.parse_close(frames[2][1]) == (4100, "")
    assert left == 0


def test_permessage_deflate_carries_messages_both_ways() -> None:
    """With permessage_deflate on, the 101 names the extension, a compressed client message is read, and
    every server frame after it is sent compressed (RSV1) and inflates to the connected frame and the echo."""

    async def go() -> tuple[bytes, list[tuple[int, bytes]]]:
        async with server(fast(permessage_deflate=True)) as rs:
            reader, writer = await asyncio.open_connection("127.0.0.1", rs.port)
            writer.write(
                _upgrade_head(f"/ws?token={token('alice')}", "Sec-WebSocket-Extensions: permessage-deflate\r\n")
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            deflater = zlib.compressobj(wbits=-15)
            text = json.dumps({"type": "send", "id": 1, "data": "squeeze " * 200}).encode()
            body = deflater.compress(text) + deflater.flush(zlib.Z_SYNC_FLUSH)
            writer.write(client_frame(ws_frames.OP_TEXT, body[:-4], rsv=0x40))
            data = b""
            async with asyncio.timeout(5):
                while len(_raw_frames(data)) < 3:  # connected, message, ack
                    data += await reader.read(65536)
            writer.close()
            return head, _raw_frames(data)

    head, frames = run(go())
    assert b"Sec-WebSocket-Extensions: permessage-deflate" in head
    assert [first for first, _ in frames] == [0xC1, 0xC1, 0xC1]  # final text frames, RSV1: compressed
    inflater = zlib.decompressobj(wbits=-15)
    texts = [json.loads(inflater.decompress(p + b"\x00\x00\xff\xff")) for _, p in frames]
    assert [t["type"] for t in texts] == ["connected", "message", "ack"]
    assert texts[1]["data"] == "squeeze " * 200


def test_a_message_that_arrives_as_the_idle_worker_is_let_go_is_still_handled_in_order() -> None:
    """When a connection's waiting worker is let go (the ping) and a message arrives before it has ended,
    that message is answered, and the next one after it."""

    async def go() -> list[dict[str, Any]]:
        async with server() as rs:
            reader, writer = await asyncio.open_connection("127.0.0.1", rs.port)
            writer.write(_upgrade_head(f"/ws?token={token('alice')}"))
            assert _status(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)) == 101
            data = b""

            async def frames(count: int) -> list[dict[str, Any]]:
                nonlocal data
                async with asyncio.timeout(5):
                    while len(_server_frames(data)) < count:
                        data += await reader.read(65536)
                return [json.loads(p) for _, p in _server_frames(data)]

            writer.write(client_frame(ws_frames.OP_TEXT, b'{"type":"send","id":1,"data":"a"}'))
            await frames(3)  # connected, message, ack: the worker now waits for the next message
            (conn,) = [c for c in rs._ctx.connections if c.conn is not None] if rs._ctx else []
            assert conn._wake is not None
            conn.release_worker()
            conn.data_received(client_frame(ws_frames.OP_TEXT, b'{"type":"send","id":2,"data":"b"}'))
            writer.write(client_frame(ws_frames.OP_TEXT, b'{"type":"send","id":3,"data":"c"}'))
            got = await frames(7)
            writer.close()
            return got[3:]

    assert run(go()) == [
        {"type": "message", "seq": 2, "data": "b"},
        {"type": "ack", "id": 2},
        {"type": "message", "seq": 3, "data": "c"},
        {"type": "ack", "id": 3},
    ]


class _Wrapped:
    """An in-memory registry with some calls replaced by a subclass (the compiled build's registry cannot be
    subclassed by interpreted code, so the tests wrap it)."""

    def __init__(self) -> None:
        from stickyws.registry.memory import InMemoryRegistry

        self.inner = InMemoryRegistry()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_unexpected_registry_fault_while_a_connection_opens_closes_it_1011_with_an_error() -> None:
    """A registry call of the opening that fails unexpectedly gives that client an internal_error frame and
    close 1011; the next client is served."""

    class FaultyOnOpen(_Wrapped):
        def user_channel(self, user_id: str) -> str | None:
            return "push:faulty" if user_id == "faulty" else None

        async def subscribe(self, channels: Any) -> None:
            if "push:faulty" in channels:
                raise RuntimeError("a reply the server did not expect")
            await self.inner.subscribe(channels)

    async def go() -> tuple[list[Any], str]:
        async with server(registry=FaultyOnOpen()) as rs, aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url(rs, token=token("faulty")))
            got = [json.loads((await ws.receive(timeout=5)).data)["type"] for _ in range(2)]
            closing = await ws.receive(timeout=5)
            got.append((closing.type, closing.data))
            other = await http.ws_connect(url(rs, token=token("fine")))
            hello = json.loads((await other.receive(timeout=5)).data)["type"]
            await other.close()
            return got, hello

    got, hello = run(go())
    assert got == ["connected", "error", (aiohttp.WSMsgType.CLOSE, protocol.CLOSE_INTERNAL_ERROR)]
    assert hello == "connected"


def test_a_close_that_begins_while_the_connection_opens_completes_with_the_clients_answer() -> None:
    """A server close started while the connection is still opening (its registry calls under way) ends as
    soon as the client answers the close frame, not after the close timeout."""
    from stickyws.server.ws_adapter import CLOSE_TIMEOUT_S

    entered, release = asyncio.Event(), asyncio.Event()

    class SlowOnOpen(_Wrapped):
        def user_channel(self, user_id: str) -> str | None:
            return "push:slow"

        async def subscribe(self, channels: Any) -> None:
            if "push:slow" in channels:
                entered.set()
                await release.wait()
            await self.inner.subscribe(channels)

    async def go() -> tuple[int | None, float]:
        async with server(registry=SlowOnOpen()) as rs, aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url(rs, token=token("alice")))
            await asyncio.wait_for(entered.wait(), 5)
            assert rs._ctx is not None
            (conn,) = rs._ctx.connections
            closing = asyncio.create_task(conn.close(4001, "taken over"))
            await asyncio.sleep(0)
            release.set()
            frames = [await ws.receive(timeout=5) for _ in range(2)]  # connected, then the close (answered)
            t0 = asyncio.get_running_loop().time()
            await asyncio.wait_for(closing, 5)
            return frames[1].data, asyncio.get_running_loop().time() - t0

    code, took = run(go())
    assert code == 4001
    assert took < CLOSE_TIMEOUT_S / 2
