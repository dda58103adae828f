"""Sessions survive a move to another server: nothing lost, nothing handled twice.

Every test takes ``registry_url``, so it runs on one redis-server and on a local Redis Cluster.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiohttp

from stickyws import keys, protocol
from stickyws.server.handler import HandlerContext
from tests.server.helpers import connect, eventually, recv_json, run, send, server
from tests.server.registries import Admin


def test_resume_on_another_server_loses_and_doubles_nothing(registry_url: str) -> None:
    """A client that loses its socket mid-stream, resumes on another server with lastSeq and resends every
    unacknowledged message gets each of 1..10 handled exactly once, acknowledged, and every reply exactly once."""
    handled: Counter[tuple[str, int]] = Counter()

    async def counting(ctx: HandlerContext, data: Any) -> list[Any]:
        handled[(ctx.session_id, ctx.msg_id)] += 1
        return [{"echo": data, "by": ctx.server_id}]

    async def go() -> None:
        async with (
            server(redis_url=registry_url, server_id="A", handler=counting) as a,
            server(redis_url=registry_url, server_id="B", handler=counting) as b,
            aiohttp.ClientSession() as http,
        ):
            ws, first = await connect(http, a, "alice")
            acked: set[int] = set()
            echoes: list[int] = []
            seen_seq = 0
            for i in range(1, 6):
                await send(ws, i, i)
            while len(acked) < 5:
                frame = await recv_json(ws)
                if frame["type"] == "ack":
                    acked.add(frame["id"])
                elif frame["type"] == "message":
                    echoes.append(frame["data"]["echo"])
                    seen_seq = frame["seq"]
            for i in range(6, 9):  # sent, then the socket dies before the client reads the acks
                await send(ws, i, i)
            on_a = next(iter(a.core.connections.values()))
            await eventually(lambda: on_a.session.last_client_id == 8)  # A has committed 6..8
            ws._response.connection.transport.abort()  # an abrupt network loss, no close frame
            await eventually(lambda: not a.core.connections)  # A has seen its socket go

            ws2, second = await connect(http, b, "alice", resume=first["resumeToken"], last_seq=seen_seq)
            assert second["resumed"] is True
            assert second["sessionId"] == first["sessionId"]
            assert second["serverId"] == "B"
            last = second["lastClientId"]
            assert last == 8  # A handled 6..8 before the loss; the client learns it here
            assert second["lastServerSeq"] == 8
            for expected_seq in (6, 7, 8):  # A's replies to 6..8 never reached the client: replayed by B
                frame = await recv_json(ws2)
                assert (frame["type"], frame["seq"]) == ("message", expected_seq)
                assert frame["data"] == {"echo": expected_seq, "by": "A"}
                echoes.append(frame["data"]["echo"])
            for i in range(6, 11):  # resend everything not acknowledged, then new ones
                await send(ws2, i, i)
            dup_acks, new_acks = set(), set()
            while len(dup_acks | new_acks) < 5:
                frame = await recv_json(ws2)
                if frame["type"] == "ack":
                    (dup_acks if frame.get("duplicate") else new_acks).add(frame["id"])
                elif frame["type"] == "message":
                    echoes.append(frame["data"]["echo"])
                    assert frame["data"]["by"] == "B"
            assert dup_acks == {6, 7, 8}
            assert new_acks == {9, 10}
            assert sorted(handled.values()) == [1] * 10
            assert sorted(msg_id for _, msg_id in handled) == list(range(1, 11))
            assert echoes == list(range(1, 11))
            await ws2.close()

    run(go())


def test_subscriptions_and_seq_survive_resume(registry_url: str) -> None:
    """Topics and the server seq carry over to the resumed session on another server."""

    async def go() -> None:
        async with (
            server(redis_url=registry_url, server_id="A") as a,
            server(redis_url=registry_url, server_id="B") as b,
            aiohttp.ClientSession() as http,
        ):
            ws, first = await connect(http, a, "bob")
            await ws.send_str(protocol.ClientMessage("subscribe", 1, topic="news").to_json())
            await ws.send_str(protocol.ClientMessage("subscribe", 2, topic="sport").to_json())
            await ws.send_str(protocol.ClientMessage("unsubscribe", 3, topic="sport").to_json())
            await send(ws, 4, "x")
            frames = [await recv_json(ws) for _ in range(5)]
            assert [f["type"] for f in frames] == ["ack", "ack", "ack", "message", "ack"]
            assert frames[3]["seq"] == 1
            await ws.close()
            ws2, second = await connect(http, b, "bob", resume=first["resumeToken"])
            assert (second["subscriptions"], second["lastClientId"], second["lastServerSeq"]) == (["news"], 4, 1)
            await send(ws2, 5, "y")
            assert (await recv_json(ws2))["seq"] == 2
            await ws2.close()

    run(go())


def test_unknown_session_resumes_as_fresh_state(registry_url: str, admin: Admin) -> None:
    """A valid resume token whose session expired gives the same session id with empty state, resumed false."""

    async def go() -> None:
        async with server(redis_url=registry_url) as rs, aiohttp.ClientSession() as http:
            ws, first = await connect(http, rs, "carol")
            await send(ws, 1, "x")
            assert [(await recv_json(ws))["type"] for _ in range(2)] == ["message", "ack"]
            await ws.close()
            await eventually(lambda: not rs.core.connections)
            assert admin.client.delete(keys.session_key("carol")) == 1  # what session_ttl_s does to an idle session
            ws, second = await connect(http, rs, "carol", resume=first["resumeToken"])
            assert (second["resumed"], second["sessionId"], second["lastClientId"]) == (False, first["sessionId"], 0)
            assert second["lastServerSeq"] == 0
            await ws.close()

    run(go())
