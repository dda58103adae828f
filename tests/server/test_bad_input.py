"""Bad client input: clear errors; only protocol violations close, with the exact close code.

The tests whose input reaches the registry take ``registry_url`` and run on one redis-server and on a
local Redis Cluster; frames refused by the parser or the socket layer never reach it and run on the
in-memory registry.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import aiohttp
import pytest

from stickyws import keys, protocol
from stickyws.publish import Publisher
from stickyws.server import app
from stickyws.server.handler import HandlerContext, HandlerError
from tests.server.helpers import SECRET, connect, eventually, fast, recv_json, run, send, server
from tests.server.registries import Admin

#: User ids and topic names a client or a backend may send that look like hash tags, key separators or escapes.
HOSTILE = ["a:{b}*", "{u:victim}", "}ü-100%{"]


@pytest.mark.parametrize(
    ("frame", "code", "msg_id"),
    [
        ("{not json", protocol.ERR_BAD_JSON, None),
        ("[1, 2]", protocol.ERR_BAD_MESSAGE, None),
        ('{"type":"teleport","id":3}', protocol.ERR_UNKNOWN_TYPE, 3),
        ('{"type":"send","id":-1,"data":1}', protocol.ERR_BAD_MESSAGE, None),
        ('{"type":"send","id":4}', protocol.ERR_BAD_MESSAGE, 4),
        ('{"type":"subscribe","id":5,"topic":""}', protocol.ERR_BAD_MESSAGE, 5),
        ('{"type":"send","id":9007199254740992,"data":1}', protocol.ERR_BAD_MESSAGE, 2**53),
    ],
)
def test_malformed_frames_get_an_error_and_the_connection_stays(frame: str, code: str, msg_id: int | None) -> None:
    """Malformed JSON, non-objects, unknown types, bad fields and ids beyond 2**53-1 get an error frame;
    the socket stays usable."""

    async def go() -> None:
        async with server() as rs, aiohttp.ClientSession() as http:
            ws, _ = await connect(http, rs, "alice")
            await ws.send_str(frame)
            err = await recv_json(ws)
            assert (err["type"], err["code"], err.get("id")) == ("error", code, msg_id)
            await send(ws, 10, "still here")
            assert (await recv_json(ws))["data"] == "still here"
            assert await recv_json(ws) == {"type": "ack", "id": 10}
            await ws.close()

    run(go())


def test_oversized_message_closes_1009_with_an_error() -> None:
    """A message above max_message_bytes gets an error frame, then close 1009 with a reason."""

    async def go() -> None:
        async with server(fast(max_message_bytes=1024)) as rs, aiohttp.ClientSession() as http:
            ws, _ = await connect(http, rs, "alice")
            await ws.send_str('{"type":"send","id":1,"data":"' + "x" * 2000 + '"}')
            err = await recv_json(ws)
            assert (err["type"], err["code"]) == ("error", protocol.ERR_TOO_BIG)
            msg = await ws.receive(timeout=3)
            assert (msg.type, msg.data, msg.extra) == (
                aiohttp.WSMsgType.CLOSE,
                protocol.CLOSE_MESSAGE_TOO_BIG,
                "message larger than 1024 bytes",
            )

    run(go())


def test_binary_frame_closes_1003_with_an_error() -> None:
    """A binary frame gets an error frame, then close 1003."""

    async def go() -> None:
        async with server() as rs, aiohttp.ClientSession() as http:
            ws, _ = await connect(http, rs, "alice")
            await ws.send_bytes(b'{"type":"send","id":1,"data":1}')
            err = await recv_json(ws)
            assert (err["type"], err["code"]) == ("error", protocol.ERR_BINARY)
            msg = await ws.receive(timeout=3)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, protocol.CLOSE_UNSUPPORTED_DATA)

    run(go())


def test_silent_peer_is_closed_1011() -> None:
    """A client that stops answering pings is closed with 1011 after ping_timeout_s."""

    async def go() -> None:
        settings = fast(ping_interval_s=0.1, ping_timeout_s=0.2)
        async with server(settings) as rs, aiohttp.ClientSession() as http:
            ws, _ = await connect(http, rs, "alice", autoping=False)
            t0 = asyncio.get_running_loop().time()
            while True:
                msg = await ws.receive(timeout=3)
                if msg.type is not aiohttp.WSMsgType.PING:
                    break
            assert msg.type is aiohttp.WSMsgType.TEXT  # the error frame that explains the close
            msg = await ws.receive(timeout=3)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, protocol.CLOSE_INTERNAL_ERROR)
            assert 0.25 <= asyncio.get_running_loop().time() - t0 < 2

    run(go())


def test_answering_peer_stays_open_across_many_pings() -> None:
    """A client that answers pings (aiohttp's autoping) stays connected through several ping intervals."""

    async def go() -> None:
        settings = fast(ping_interval_s=0.1, ping_timeout_s=0.2)
        async with server(settings) as rs, aiohttp.ClientSession() as http:
            ws, _ = await connect(http, rs, "alice")

            async def send_later() -> None:
                # The idle time is the claim: 0.6 s is six ping intervals and three ping timeouts.
                await asyncio.sleep(0.6)
                await send(ws, 1, "ok")

            sender = asyncio.create_task(send_later())
            assert (await recv_json(ws))["data"] == "ok"  # while reading, aiohttp answers the pings
            await sender
            assert not ws.closed
            await ws.close()

    run(go())


def test_handler_error_is_reported_and_message_not_marked_handled() -> None:
    """A HandlerError becomes an error frame with the message id; the id is not acked and can be retried."""
    calls: list[int] = []

    async def flaky(ctx: HandlerContext, data: object) -> list[object]:
        calls.append(ctx.msg_id)
        if len(calls) == 1:
            raise HandlerError("busy", "try again")
        return [data]

    async def go() -> None:
        async with server(handler=flaky) as rs, aiohttp.ClientSession() as http:
            ws, _ = await connect(http, rs, "alice")
            await send(ws, 1, "a")
            assert await recv_json(ws) == {"type": "error", "code": "busy", "message": "try again", "id": 1}
            await send(ws, 1, "a")
            assert (await recv_json(ws))["data"] == "a"
            assert await recv_json(ws) == {"type": "ack", "id": 1}
            assert calls == [1, 1]
            await ws.close()

    run(go())


def test_pings_off_sends_no_pings() -> None:
    """With ping_interval_s off the server sends no pings and never closes an idle connection for it."""

    async def go() -> None:
        async with server(fast(ping_interval_s="off", ping_timeout_s=0.1)) as rs, aiohttp.ClientSession() as http:
            ws, _ = await connect(http, rs, "alice", autoping=False)
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=0.5)
            assert not ws.closed
            await ws.close()

    run(go())


def test_unexpected_registry_fault_closes_only_that_connection_1011(registry_url: str, admin: Admin) -> None:
    """A registry reply the server does not expect (here: the session key holds a string, WRONGTYPE) ends that
    connection with an internal_error frame and 1011; the server keeps serving others."""

    async def go() -> None:
        async with server(redis_url=registry_url) as rs, aiohttp.ClientSession() as http:
            ws, _ = await connect(http, rs, "alice")
            await send(ws, 1, "w")  # answered once the connection is open (its session read back)
            assert [(await recv_json(ws))["type"] for _ in range(2)] == ["message", "ack"]
            admin.client.delete(keys.session_key("alice"))
            admin.client.set(keys.session_key("alice"), "not a hash")
            await send(ws, 2, "x")
            err = await recv_json(ws)
            assert (err["type"], err["code"]) == ("error", protocol.ERR_INTERNAL)
            msg = await ws.receive(timeout=3)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, protocol.CLOSE_INTERNAL_ERROR)
            other, _ = await connect(http, rs, "bob")
            await send(other, 1, "y")
            assert (await recv_json(other))["data"] == "y"
            await other.close()

    run(go())


def test_ids_and_topics_shaped_like_hash_tags_keep_to_their_own_keys(registry_url: str, admin: Admin) -> None:
    """User ids and topic names holding braces, colons, % and non-ASCII connect, commit, subscribe, get a push
    and a publication and resume; the registry then holds exactly each one's own session and topic keys."""

    async def go() -> None:
        async with (
            server(redis_url=registry_url) as rs,
            aiohttp.ClientSession() as http,
            Publisher(registry_url) as pub,
        ):
            for name in HOSTILE:
                ws, first = await connect(http, rs, name)
                await ws.send_str(protocol.ClientMessage("subscribe", 1, topic=name).to_json())
                ack = await recv_json(ws)
                assert (ack["type"], ack["id"], ack["topic"]) == ("ack", 1, name)
                await send(ws, 2, name)
                assert [await recv_json(ws) for _ in range(2)] == [
                    {"type": "message", "seq": 1, "data": name},
                    {"type": "ack", "id": 2},
                ]
                pushed = await pub.send_to_user(name, {"to": name})
                assert (pushed.status, pushed.seq) == ("sent", 2)
                assert await recv_json(ws) == {"type": "message", "seq": 2, "data": {"to": name}}
                published = await pub.publish(name, name)
                frame = await recv_json(ws)
                assert (frame["type"], frame["topic"], frame["offset"], frame["data"]) == (
                    "publication", name, published.offset, name,
                )  # fmt: skip
                await ws.close()
                await eventually(lambda: not rs.core.connections)
                ws, again = await connect(http, rs, name, resume=first["resumeToken"])
                assert (again["resumed"], again["subscriptions"], again["lastClientId"], again["lastServerSeq"]) == (
                    True, [name], 2, 2,
                )  # fmt: skip
                await ws.close()
                await eventually(lambda: not rs.core.connections)

    run(go())
    assert admin.stored() == sorted(
        k.encode() for n in HOSTILE for k in (keys.session_key(n), keys.topic_meta_key(n), keys.topic_log_key(n))
    )


def test_pinger_keeps_connections_in_due_order_and_pings_only_the_due_ones() -> None:
    """The pinger pings the connections whose time has come, oldest first, and a pong sends one to the back."""
    from stickyws.registry.records import SessionRecord
    from stickyws.server.core_types import Connection
    from stickyws.server.session import SessionState
    from stickyws.server.ws_adapter import _Pinger

    class FakeConnection:
        def __init__(self) -> None:
            self.pings = 0
            self.next_ping = 0.0
            self.pong_due: float | None = None

        def ping(self) -> None:
            self.pings += 1

    async def go() -> None:
        config = app.ServerConfig(fast(ping_interval_s=1.0, ping_timeout_s=5.0), SECRET, None, "srv-a", None, False)
        pinger = _Pinger(app.build_core(config))
        transports = [FakeConnection() for _ in range(3)]
        for i, t in enumerate(transports):
            if i:
                await asyncio.sleep(0.4)  # the claim needs due times 0.4 s apart (the pinger reads the loop's clock)
            conn = Connection(
                f"c{i}", SessionState.from_record(SessionRecord(f"s{i}", f"u{i}")), cast(Any, t), None, 0, 0
            )
            pinger.add(t, conn)
        assert list(pinger.idle) == transports
        await eventually(lambda: transports[0] in pinger.awaiting)  # the first one has been pinged
        assert [t.pings for t in transports] == [1, 0, 0]
        pinger.on_pong(transports[0])
        assert list(pinger.idle)[-1] is transports[0]
        assert transports[0].pong_due is None
        await pinger.stop()

    run(go())
