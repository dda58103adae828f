"""The server and its push paths on both registry modes: one redis-server and a real local Redis Cluster.

Every test here takes ``registry_url`` (tests/server/registries.py), so it runs once on each mode
with the same assertions; a script that touched two slots would fail on the cluster.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
import redis

from stickyws import keys
from stickyws.localcluster import LocalCluster
from stickyws.registry.redis_registry import RedisRegistry
from tests.server.helpers import connect, eventually, recv_json, run, send, server
from tests.server.registries import Admin


async def _frames(ws: aiohttp.ClientWebSocketResponse, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    return [await recv_json(ws, timeout_s) for _ in range(count)]


def test_the_registry_says_which_mode_it_is(registry_url: str, admin: Admin) -> None:
    """The server learns the mode from the registry itself: the URL is all it is given."""

    async def go() -> str | None:
        reg = RedisRegistry(registry_url)
        try:
            await reg.heartbeat("probe", "{}", 5)
            return reg.mode
        finally:
            await reg.close()

    assert run(go()) == ("cluster" if admin.cluster is not None else "single")


def test_handshake_messages_and_resume_on_another_server(registry_url: str) -> None:
    """A client's messages are acked once; it resumes on a second server with its replies replayed."""

    async def go() -> None:
        async with (
            server(redis_url=registry_url, server_id="A") as a,
            server(redis_url=registry_url, server_id="B") as b,
            aiohttp.ClientSession() as http,
        ):
            ws, first = await connect(http, a, "alice")
            for i in range(1, 4):
                await send(ws, i, i)
            frames = await _frames(ws, 6)
            assert [f["type"] for f in frames] == ["message", "ack"] * 3
            await ws.close()
            ws, again = await connect(http, b, "alice", resume=first["resumeToken"], last_seq=1)
            assert (again["resumed"], again["lastClientId"], again["lastServerSeq"]) == (True, 3, 3)
            assert await _frames(ws, 2) == [
                {"type": "message", "seq": 2, "data": 2},
                {"type": "message", "seq": 3, "data": 3},
            ]
            await send(ws, 3, 3)
            assert await recv_json(ws) == {"type": "ack", "id": 3, "duplicate": True}

    run(go())


def test_a_thousand_users_spread_over_the_primaries(redis_cluster: LocalCluster, cluster_url: str) -> None:
    """The hash-tagged keys of 1,000 users land on all three primaries, each holding a share within 2x of the others."""

    async def go() -> None:
        reg = RedisRegistry(cluster_url)
        try:
            await asyncio.gather(
                *(
                    reg.handshake(
                        user_id=f"user-{i}",
                        server_id="A",
                        session_id=f"s{i}",
                        resume=False,
                        reject_live_owner=False,
                        routing_ttl_s=60,
                        session_ttl_s=60,
                    )
                    for i in range(1000)
                )
            )
        finally:
            await reg.close()

    run(go(), timeout_s=60)
    counts = Counter()
    for node in redis_cluster.primary_nodes():
        client = redis.Redis(host="127.0.0.1", port=node.port)
        try:
            counts[node.port] = int(client.dbsize())
        finally:
            client.close()
    shares = sorted(counts.values())
    assert sum(shares) == 2000  # a route and a session per user
    assert len(shares) == 3
    assert shares[-1] <= 2 * shares[0]


def test_a_drain_notice_drains_the_server(registry_url: str) -> None:
    """A drain notice written and published as the drain notifier does tells the server's clients to
    reconnect, on either registry mode."""

    async def go() -> dict[str, Any]:
        async with server(redis_url=registry_url, server_id="task-d") as rs, aiohttp.ClientSession() as http:
            ws, _ = await connect(http, rs, "dora")
            await eventually(lambda: rs.core.registry.available and rs.core.state.value == "serving")
            notice = keys.DrainNotice(server_id="task-d", source="ecs-task-state-change")
            reg = RedisRegistry(registry_url)
            try:
                assert await reg.drain_notice("task-d") is None  # the first call learns the mode
                await reg.client.set(keys.drain_key("task-d"), notice.to_json(), ex=60)
                await reg.client.publish(keys.drain_key("task-d"), notice.to_json())
            finally:
                await reg.close()
            return await recv_json(ws, 10)

    frame = run(go(), timeout_s=20)
    assert (frame["type"], frame["reason"]) == ("reconnect", "server_draining")
