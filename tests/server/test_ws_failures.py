"""RFC 6455 7.1.7 on real sockets: a protocol violation fails the connection at once; other closes shake hands.

A raw client on loopback sends the bad bytes itself. On a violation the server sends its close frame and
ends the TCP connection right away (the client reads EOF), without waiting for a close frame it will not
read; the old wait for that reply was :data:`~stickyws.server.ws_adapter.CLOSE_TIMEOUT_S` (2 s), so every
EOF here must come within :data:`EOF_BOUND_S`. Messages that came before the violation in the same read
are still handled, in order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
from typing import Any

import pytest

from stickyws import protocol
from stickyws.server import ws_adapter
from stickyws.server.handler import HandlerContext
from stickyws.server.ws_adapter import RunningServer
from stickyws.server.ws_frames import OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, FrameError, FrameReader
from tests.server.helpers import client_frame, fast, run, server, token

#: How soon after the violation the client must read EOF: far below the closing handshake's wait.
EOF_BOUND_S = 0.5
#: A close frame whose peer does not answer keeps the socket this long at least (the closing handshake).
HANDSHAKE_HOLD_S = 0.3
OP_CONTINUATION = 0x0


def text(data: str) -> bytes:
    """A masked, final text frame."""
    return client_frame(OP_TEXT, data.encode())


def send_frame(msg_id: int, data: Any) -> bytes:
    """A ``send`` message as one masked text frame."""
    return text(protocol.ClientMessage("send", msg_id, data=data).to_json())


class RawClient:
    """A WebSocket client that writes whatever bytes it is given and reads the server's frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, rs: RunningServer, user: str) -> RawClient:
        """Upgrade as ``user`` and read the ``connected`` frame."""
        reader, writer = await asyncio.open_connection("127.0.0.1", rs.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {protocol.WS_PATH}?token={token(user)} HTTP/1.1\r\nHost: 127.0.0.1:{rs.port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: {protocol.SUBPROTOCOL}\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 101 "), head
        client = cls(reader, writer)
        opcode, payload = await client.frame()
        assert (opcode, json.loads(payload)["type"]) == (OP_TEXT, "connected"), payload
        return client

    async def frame(self, timeout_s: float = 3.0) -> tuple[int, bytes]:
        """The server's next frame: ``(opcode, payload)`` (server frames are unmasked)."""
        async with asyncio.timeout(timeout_s):
            b0, b1 = await self.reader.readexactly(2)
            assert not b1 & 0x80, "a server frame must not be masked"
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            return b0 & 0x0F, await self.reader.readexactly(n)

    async def close_frame(self) -> tuple[int, str]:
        """``(code, reason)`` of the next frame, which must be a close frame."""
        opcode, payload = await self.frame()
        assert opcode == OP_CLOSE, (opcode, payload)
        return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    async def eof_within(self, timeout_s: float) -> None:
        """Fail unless the server ends the TCP connection (EOF) within ``timeout_s``, sending nothing more."""
        async with asyncio.timeout(timeout_s):
            rest = await self.reader.read()
        assert rest == b"", f"bytes after the close frame: {rest!r}"

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


VIOLATIONS = [
    ("unmasked", client_frame(OP_TEXT, b"hi", masked=False), 1002),
    ("rsv1-without-deflate", client_frame(OP_TEXT, b"hi", rsv=0x40), 1002),
    ("rsv2", client_frame(OP_TEXT, b"hi", rsv=0x20), 1002),
    ("rsv3-on-a-ping", client_frame(OP_PING, b"p", rsv=0x10), 1002),
    ("unknown-data-opcode", client_frame(0x3, b"?"), 1002),
    ("unknown-control-opcode", client_frame(0xB, b"?"), 1002),
    ("invalid-utf8-text", client_frame(OP_TEXT, b"\xff\xfe"), 1007),
    (
        "invalid-utf8-across-fragments",
        client_frame(OP_TEXT, b"\xc3", fin=False) + client_frame(OP_CONTINUATION, b"("),
        1007,
    ),
    ("control-over-125-bytes", client_frame(OP_PING, b"p" * 126), 1002),
    ("fragmented-control", client_frame(OP_PING, b"p", fin=False), 1002),
    ("continuation-without-a-message", client_frame(OP_CONTINUATION, b"orphan"), 1002),
    ("new-message-inside-a-fragmented-one", client_frame(OP_TEXT, b"a", fin=False) + client_frame(OP_TEXT, b"b"), 1002),
]


@pytest.mark.parametrize(("violation", "code"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS])
def test_a_protocol_violation_gets_its_close_code_and_the_tcp_connection_ends_at_once(
    violation: bytes, code: int
) -> None:
    """Each kind of violation gets a close frame with its code, then EOF within EOF_BOUND_S."""

    async def go() -> None:
        async with server() as rs:
            client = await RawClient.connect(rs, "alice")
            client.send(violation)
            t0 = asyncio.get_running_loop().time()
            assert (await client.close_frame())[0] == code
            await client.eof_within(EOF_BOUND_S - (asyncio.get_running_loop().time() - t0))
            await client.aclose()

    run(go())


@pytest.mark.parametrize(
    "oversized",
    [
        text("x" * 2000),
        client_frame(OP_TEXT, b"x" * 600, fin=False) + client_frame(OP_CONTINUATION, b"x" * 600),
    ],
    ids=["declared", "reassembled"],
)
def test_a_message_over_max_message_bytes_gets_an_error_then_1009_and_the_tcp_connection_ends_at_once(
    oversized: bytes,
) -> None:
    """A message over max_message_bytes gets an error frame, close 1009 with its reason, then EOF within
    EOF_BOUND_S."""

    async def go() -> None:
        async with server(fast(max_message_bytes=1024)) as rs:
            client = await RawClient.connect(rs, "alice")
            client.send(oversized)
            t0 = asyncio.get_running_loop().time()
            opcode, payload = await client.frame()
            error = json.loads(payload)
            assert (opcode, error["type"], error["code"]) == (OP_TEXT, "error", protocol.ERR_TOO_BIG)
            assert await client.close_frame() == (1009, "message larger than 1024 bytes")
            await client.eof_within(EOF_BOUND_S - (asyncio.get_running_loop().time() - t0))
            await client.aclose()

    run(go())


def test_an_invalid_close_frame_is_answered_1002_and_the_tcp_connection_ends_at_once() -> None:
    """A close frame with a code no peer may send (999) is answered with close 1002, then EOF within EOF_BOUND_S."""

    async def go() -> None:
        async with server() as rs:
            client = await RawClient.connect(rs, "alice")
            client.send(client_frame(OP_CLOSE, struct.pack("!H", 999)))
            t0 = asyncio.get_running_loop().time()
            assert (await client.close_frame())[0] == 1002
            await client.eof_within(EOF_BOUND_S - (asyncio.get_running_loop().time() - t0))
            await client.aclose()

    run(go())


def test_messages_before_a_violation_in_the_same_read_are_handled_in_order_then_the_connection_fails() -> None:
    """Two send frames and an unmasked frame in one write: the handler gets both messages, in order; the
    client gets close 1002 and EOF."""
    handled: list[Any] = []
    both = asyncio.Event()

    async def recording(ctx: HandlerContext, data: Any) -> list[Any]:
        handled.append(data)
        if len(handled) == 2:
            both.set()
        return [data]

    async def go() -> None:
        async with server(handler=recording) as rs:
            client = await RawClient.connect(rs, "alice")
            client.send(send_frame(1, "first") + send_frame(2, "second") + client_frame(OP_TEXT, b"bad", masked=False))
            assert (await client.close_frame())[0] == 1002
            await client.eof_within(EOF_BOUND_S)
            async with asyncio.timeout(3):
                await both.wait()
            assert handled == ["first", "second"]
            await client.aclose()

    run(go())


def test_a_close_frame_before_a_violation_in_the_same_read_is_answered_as_a_close() -> None:
    """A client close (1000) followed by garbage in the same write gets the normal answer 1000, not 1002."""

    async def go() -> None:
        async with server() as rs:
            client = await RawClient.connect(rs, "alice")
            client.send(client_frame(OP_CLOSE, struct.pack("!H", 1000)) + client_frame(0x3, b"?"))
            assert (await client.close_frame())[0] == 1000
            await client.eof_within(EOF_BOUND_S)
            await client.aclose()

    run(go())


def test_the_reader_hands_over_what_came_before_a_violation() -> None:
    """FrameReader.feed raises FrameError carrying the messages and control frames parsed before the
    violation, in order; a violation first carries none."""
    reader = FrameReader(1024)
    with pytest.raises(FrameError) as caught:
        reader.feed(
            text("a") + client_frame(OP_PING, b"p") + client_frame(OP_BINARY, b"b") + client_frame(OP_TEXT, b"\xff")
        )
    assert (caught.value.code, caught.value.frames) == (1007, [(OP_TEXT, "a"), (OP_PING, b"p"), (OP_BINARY, b"b")])
    with pytest.raises(FrameError) as caught:
        FrameReader(1024).feed(client_frame(OP_TEXT, b"x", masked=False) + text("never"))
    assert (caught.value.code, caught.value.frames) == (1002, [])


def test_a_server_close_for_another_reason_still_waits_for_the_peer_close_frame() -> None:
    """Closing for going away (1001) is a closing handshake: the server keeps the TCP connection while the
    client has not answered, and ends it as soon as the client's close frame arrives."""

    async def go() -> None:
        async with server() as rs:
            client = await RawClient.connect(rs, "alice")
            conn = next(iter(rs.core.connections.values()))
            closing = asyncio.create_task(conn.transport.close(protocol.CLOSE_GOING_AWAY, "server shutting down"))
            assert await client.close_frame() == (1001, "server shutting down")
            with pytest.raises(TimeoutError):  # no answer yet: the socket stays open
                await client.eof_within(HANDSHAKE_HOLD_S)
            assert not closing.done()
            client.send(client_frame(OP_CLOSE, struct.pack("!H", 1001)))
            await client.eof_within(EOF_BOUND_S)
            async with asyncio.timeout(ws_adapter.CLOSE_TIMEOUT_S):
                await closing
            await client.aclose()

    run(go())
