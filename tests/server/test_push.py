"""Server push: user messages and topic publications, exactly once and in order, through resumes.

Every test that takes ``registry_url`` runs twice: on one redis-server and on a local Redis Cluster.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from stickyws import keys, protocol
from stickyws.publish import Publisher, PublishError
from stickyws.registry.memory import InMemoryRegistry
from tests.server.helpers import connect, eventually, fast, recv_json, run, send, server
from tests.server.registries import Admin


async def _frames(ws: aiohttp.ClientWebSocketResponse, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    return [await recv_json(ws, timeout_s) for _ in range(count)]


async def _until(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Frames up to and including the first of type ``kind``."""
    out = []
    async with asyncio.timeout(timeout_s):
        while True:
            frame = await recv_json(ws, timeout_s)
            out.append(frame)
            if frame["type"] == kind:
                return out


def test_push_to_a_connected_user_arrives_as_the_next_message(registry_url: str) -> None:
    """send_to_user returns the seq it assigned and the user's socket receives exactly that message."""

    async def go() -> None:
        async with (
            server(redis_url=registry_url) as rs,
            aiohttp.ClientSession() as http,
            Publisher(registry_url) as pub,
        ):
            ws, first = await connect(http, rs, "alice")
            await send(ws, 1, "hi")
            assert [f["type"] for f in await _frames(ws, 2)] == ["message", "ack"]
            result = await pub.send_to_user("alice", {"n": 1})
            assert (result.status, result.seq, result.session_id, result.server_id) == (
                "sent", 2, first["sessionId"], "srv-a",
            )  # fmt: skip
            assert await recv_json(ws) == {"type": "message", "seq": 2, "data": {"n": 1}}

    run(go())


def test_pushes_and_replies_share_one_gapless_seq_order(registry_url: str) -> None:
    """200 pushes racing 50 client messages: the socket sees seqs 1..250 once each, in order, and every ack."""

    async def go() -> None:
        async with (
            server(redis_url=registry_url) as rs,
            aiohttp.ClientSession() as http,
            Publisher(registry_url) as pub,
        ):
            ws, _ = await connect(http, rs, "bob")

            async def client_side() -> None:
                for i in range(1, 51):
                    await send(ws, i, i)

            async def backend() -> None:
                for i in range(200):
                    await pub.send_to_user("bob", {"push": i})

            await asyncio.gather(client_side(), backend())
            seqs, acks, pushes = [], [], []
            while len(seqs) < 250 or len(acks) < 50:
                frame = await recv_json(ws)
                if frame["type"] == "message":
                    seqs.append(frame["seq"])
                    if isinstance(frame["data"], dict):
                        pushes.append(frame["data"]["push"])
                else:
                    assert frame["type"] == "ack"
                    acks.append(frame["id"])
            assert seqs == list(range(1, 251))
            assert pushes == list(range(200))
            assert acks == list(range(1, 51))

    run(go(), timeout_s=30)


def test_offline_user_gets_pushes_on_resume_and_an_explicit_gap_for_what_overflowed(registry_url: str) -> None:
    """Pushes to a disconnected user are kept within outbox_max_messages; the resume replays them after a
    gap frame naming exactly the seqs that no longer fit."""

    async def go() -> None:
        settings = fast(outbox_max_messages=5)
        async with (
            server(settings, redis_url=registry_url) as rs,
            aiohttp.ClientSession() as http,
            Publisher(registry_url) as pub,
        ):
            ws, first = await connect(http, rs, "carol")
            await ws.close()
            await eventually(lambda: not rs.core.connections)
            results = [await pub.send_to_user("carol", i) for i in range(1, 9)]
            assert [(r.status, r.seq) for r in results] == [("stored", i) for i in range(1, 9)]
            ws, again = await connect(http, rs, "carol", resume=first["resumeToken"], last_seq=0)
            assert again["resumed"] is True
            assert again["lastServerSeq"] == 8
            assert await _frames(ws, 6) == [
                {"type": "gap", "fromSeq": 1, "toSeq": 3},
                *({"type": "message", "seq": s, "data": s} for s in range(4, 9)),
            ]

    run(go())


def test_a_push_retried_with_its_key_is_stored_and_delivered_once(registry_url: str) -> None:
    """The same idempotency key twice: one message, the second call says duplicate with the first seq."""

    async def go() -> None:
        async with (
            server(redis_url=registry_url) as rs,
            aiohttp.ClientSession() as http,
            Publisher(registry_url) as pub,
        ):
            ws, _ = await connect(http, rs, "kim")
            first = await pub.send_to_user("kim", {"n": 1}, key="order-17")
            again = await pub.send_to_user("kim", {"n": 1}, key="order-17")
            other = await pub.send_to_user("kim", {"n": 2}, key="order-18")
            assert (first.seq, first.duplicate) == (1, False)
            assert (again.seq, again.duplicate, again.status) == (1, True, "sent")
            assert again.as_dict()["duplicate"] is True
            assert (other.seq, other.duplicate) == (2, False)
            assert [(f["seq"], f["data"]) for f in await _frames(ws, 2)] == [(1, {"n": 1}), (2, {"n": 2})]
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.receive(), 0.3)  # the re-announced seq 1 was not sent again
            with pytest.raises(PublishError) as bad:
                await pub.send_to_user("kim", 3, key="")
            assert bad.value.code == "bad_key"

    run(go())


def test_push_to_an_unknown_user_stores_nothing_and_says_so(registry_url: str, admin: Admin) -> None:
    """An unknown user gives status no_session (or PublishError with require_session) and writes no key."""

    async def go() -> None:
        async with Publisher(registry_url) as pub:
            assert (await pub.send_to_user("nobody", 1)).as_dict() == {
                "status": "no_session", "seq": None, "sessionId": None, "serverId": None,
            }  # fmt: skip
            with pytest.raises(PublishError) as refused:
                await pub.send_to_user("nobody", 1, require_session=True)
            assert refused.value.code == "no_session"
            with pytest.raises(PublishError) as big:
                await pub.send_to_user("nobody", "x" * 70_000)
            assert big.value.code == "too_large"
            with pytest.raises(PublishError) as bad:
                await pub.send_to_user("nobody", {1, 2})
            assert bad.value.code == "bad_data"

    run(go())
    assert admin.keys() == []


def test_topic_publications_reach_every_subscriber_on_every_server_with_one_subscription_per_server(
    registry_url: str, admin: Admin
) -> None:
    """Three subscribers on two servers get each publication once, in offset order; each server holds one
    Redis subscription for the topic; the subscribe ack names the position live publications follow."""

    async def go() -> None:
        async with (
            server(redis_url=registry_url, server_id="A") as a,
            server(redis_url=registry_url, server_id="B") as b,
            aiohttp.ClientSession() as http,
            Publisher(registry_url) as pub,
        ):
            first = await pub.publish("news", "before")
            sockets = []
            for user, rs in (("u1", a), ("u2", a), ("u3", b)):
                ws, _ = await connect(http, rs, user)
                await ws.send_str(protocol.ClientMessage("subscribe", 1, topic="news").to_json())
                ack = await recv_json(ws)
                assert ack == {"type": "ack", "id": 1, "topic": "news", "offset": 1, "epoch": first.epoch}
                sockets.append(ws)
            assert admin.subscribers(keys.topic_channel("news")) == 2
            sent = [await pub.publish("news", {"n": i}) for i in range(2, 12)]
            assert [p.offset for p in sent] == list(range(2, 12))
            for ws in sockets:
                got = await _frames(ws, 10)
                assert got == [
                    {"type": "publication", "topic": "news", "offset": i, "epoch": first.epoch, "data": {"n": i}}
                    for i in range(2, 12)
                ]

    run(go(), timeout_s=20)


def test_resume_with_since_recovers_missed_publications_or_says_unrecoverable(registry_url: str) -> None:
    """A client back with (offset, epoch) gets exactly the publications it missed, then live ones; past the
    retention count it gets one unrecoverable frame with the current position instead."""

    async def go() -> None:
        settings = fast(topic_retention_count=5)
        async with (
            server(settings, redis_url=registry_url) as rs,
            aiohttp.ClientSession() as http,
            Publisher(registry_url, settings=settings) as pub,
        ):
            ws, first = await connect(http, rs, "dave")
            await ws.send_str(protocol.ClientMessage("subscribe", 1, topic="t").to_json())
            ack = await recv_json(ws)
            assert (ack["offset"], ack["epoch"]) == (0, "")
            p1 = await pub.publish("t", 1)
            assert (await recv_json(ws))["offset"] == 1
            await ws.close()
            await eventually(lambda: not rs.core.connections)
            for i in range(2, 5):
                await pub.publish("t", i)
            since = protocol.since_query({"t": (1, p1.epoch)})
            ws, again = await connect(http, rs, "dave", resume=first["resumeToken"], last_seq=0, since=since)
            assert again["subscriptions"] == ["t"]
            assert [(f["offset"], f["data"]) for f in await _frames(ws, 3)] == [(2, 2), (3, 3), (4, 4)]
            await pub.publish("t", 5)
            assert (await recv_json(ws))["offset"] == 5
            await ws.close()
            await eventually(lambda: not rs.core.connections)
            for i in range(6, 14):
                await pub.publish("t", i)
            since = protocol.since_query({"t": (5, p1.epoch)})
            ws, _ = await connect(http, rs, "dave", resume=first["resumeToken"], last_seq=0, since=since)
            assert await recv_json(ws) == {"type": "unrecoverable", "topic": "t", "offset": 13, "epoch": p1.epoch}
            await pub.publish("t", 14)
            assert (await recv_json(ws))["offset"] == 14

    run(go(), timeout_s=20)


def test_subscribe_with_a_stale_epoch_is_unrecoverable(registry_url: str) -> None:
    """A subscribe frame carrying an epoch the topic no longer has gets unrecoverable, then its ack."""

    async def go() -> None:
        async with (
            server(redis_url=registry_url) as rs,
            aiohttp.ClientSession() as http,
            Publisher(registry_url) as pub,
        ):
            p = await pub.publish("e", 1)
            ws, _ = await connect(http, rs, "erin")
            msg = protocol.ClientMessage("subscribe", 1, topic="e", offset=7, epoch="old-epoch")
            await ws.send_str(msg.to_json())
            assert await _frames(ws, 2) == [
                {"type": "unrecoverable", "topic": "e", "offset": 1, "epoch": p.epoch},
                {"type": "ack", "id": 1, "topic": "e", "offset": 1, "epoch": p.epoch},
            ]

    run(go())


def test_a_client_that_stops_reading_is_closed_1013_and_resumes_with_everything(registry_url: str) -> None:
    """Pushes to a socket that is not read pile up to max_output_bytes: the server closes it with 1013 and
    holds nothing more for it; the resume then delivers every seq once."""

    async def go() -> None:
        # 2000 x 16 KB = 32 MB: far more than loopback's socket buffers can absorb (about 10 MB with autotuning),
        # so the server's own unsent output passes max_output_bytes however fast the pushes come.
        settings = fast(
            max_output_bytes=262_144, outbox_max_bytes=67_108_864, outbox_max_messages=10_000, ack_wait_replicas=0
        )
        big = "z" * 16_000
        async with (
            server(settings, redis_url=registry_url) as rs,
            aiohttp.ClientSession() as http,
            Publisher(registry_url, settings=settings) as pub,
        ):
            ws, first = await connect(http, rs, "slow", max_msg_size=0, autoclose=False)
            conn = next(iter(rs.core.connections.values()))
            total = 0
            while not conn.closing and total < 2000:
                total += 1
                await pub.send_to_user("slow", {"i": total, "pad": big})
            assert conn.closing  # closed as a slow consumer long before 2000 x 16 KB (32 MB) were held for it
            assert total < 2000
            assert '"event":"slow_consumer"' in rs.core.metrics.out.getvalue()
            async with asyncio.timeout(10):
                while (msg := await ws.receive()).type is aiohttp.WSMsgType.TEXT:
                    pass
            assert (msg.type, msg.data, msg.extra) == (aiohttp.WSMsgType.CLOSE, 1013, "slow consumer")
            ws2, again = await connect(http, rs, "slow", resume=first["resumeToken"], last_seq=0)
            seqs = [f["seq"] for f in await _frames(ws2, again["lastServerSeq"], timeout_s=10)]
            assert seqs == list(range(1, total + 1))

    run(go(), timeout_s=40)


def test_v1_client_that_knows_nothing_of_push_keeps_working(registry_url: str) -> None:
    """A client that sends no lastSeq or since and reads only message/ack frames still gets its replies,
    acks and pushed messages (pushes are ordinary message frames)."""

    async def go() -> None:
        async with (
            server(redis_url=registry_url) as rs,
            aiohttp.ClientSession() as http,
            Publisher(registry_url) as pub,
        ):
            ws = await http.ws_connect(
                f"http://127.0.0.1:{rs.port}/ws?token={_token('old')}", protocols=["stickyws.v1"]
            )
            assert json.loads((await ws.receive()).data)["type"] == "connected"
            await ws.send_str('{"type":"send","id":1,"data":"x"}')
            assert [json.loads((await ws.receive()).data)["type"] for _ in range(2)] == ["message", "ack"]
            await pub.send_to_user("old", "pushed")
            assert json.loads((await ws.receive(timeout=5)).data) == {"type": "message", "seq": 2, "data": "pushed"}

    run(go())


def _token(user: str) -> str:
    from tests.server.helpers import token

    return token(user)


def test_pushes_announced_while_the_listener_was_away_are_delivered_after_it_returns(
    registry_url: str, admin: Admin
) -> None:
    """With the server's pub/sub connection killed, pushes and publications made meanwhile still reach the
    socket, once each and in order, when the listener resubscribes."""

    async def go() -> None:
        async with (
            server(redis_url=registry_url) as rs,
            aiohttp.ClientSession() as http,
            Publisher(registry_url) as pub,
        ):
            ws, _ = await connect(http, rs, "frank")
            await ws.send_str(protocol.ClientMessage("subscribe", 1, topic="live").to_json())
            await recv_json(ws)
            assert admin.kill_subscribers() >= 1
            for i in range(1, 6):
                await pub.send_to_user("frank", i)
                await pub.publish("live", i)
            frames = await _frames(ws, 10, timeout_s=8)
            assert [f["seq"] for f in frames if f["type"] == "message"] == [1, 2, 3, 4, 5]
            assert [f["offset"] for f in frames if f["type"] == "publication"] == [1, 2, 3, 4, 5]

    run(go(), timeout_s=20)


def test_in_memory_registry_pushes_and_publishes_like_redis() -> None:
    """With the in-memory registry (one server, no Redis) pushes and topic publications are delivered too."""

    async def go() -> None:
        registry = InMemoryRegistry()
        async with server(registry=registry) as rs, aiohttp.ClientSession() as http:
            pub = Publisher(registry=registry)
            ws, _ = await connect(http, rs, "gina")
            await ws.send_str(protocol.ClientMessage("subscribe", 1, topic="m").to_json())
            assert (await recv_json(ws))["offset"] == 0
            assert (await pub.send_to_user("gina", "hello")).seq == 1
            p = await pub.publish("m", {"a": 1})
            assert await _frames(ws, 2) == [
                {"type": "message", "seq": 1, "data": "hello"},
                {"type": "publication", "topic": "m", "offset": 1, "epoch": p.epoch, "data": {"a": 1}},
            ]

    run(go())
