"""Redis stopped and restarted mid-session: connections live on, health degrades, state is reconciled.

One redis-server only: each test kills and restarts a registry of its own (or names a port nobody
listens on), which the session's shared Redis Cluster must survive for the tests after it; a cluster
node's failure and failover are tested in tests/cluster/test_failover.py.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import redis

from stickyws import keys
from stickyws.localproc import RedisServer
from tests.server.helpers import connect, eventually, fast, recv_json, run, send, server, token, url


async def _health(http: aiohttp.ClientSession, rs) -> tuple[int, dict]:
    async with http.get(url(rs, "/health")) as resp:
        return resp.status, await resp.json()


def test_redis_restart_mid_session(make_redis) -> None:
    """With Redis down the open socket keeps working (acks, seq), /health is 200 with registry degraded,
    new handshakes get 503; when Redis returns empty, route and session are re-registered, duplicates are
    still recognised, and the drain channel works again."""
    rsrv: RedisServer = make_redis()

    async def go() -> None:
        async with server(fast(), redis_url=rsrv.url, server_id="A") as rs, aiohttp.ClientSession() as http:
            ws, _ = await connect(http, rs, "alice")
            await send(ws, 1, "one")
            assert [(await recv_json(ws))["type"] for _ in range(2)] == ["message", "ack"]

            rsrv.kill()
            for i in (2, 3):
                await send(ws, i, i)
                msg, ack = await recv_json(ws), await recv_json(ws)
                assert (msg["seq"], msg["data"], ack) == (i, i, {"type": "ack", "id": i})

            async def degraded() -> bool:
                status, body = await _health(http, rs)
                return status == 200 and body["registry"] == "degraded"

            await eventually(degraded, timeout_s=3)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url(rs, token=token("bob")))
            assert refused.value.status == 503

            await asyncio.to_thread(rsrv.start)
            r = redis.Redis.from_url(rsrv.url)

            def reconciled() -> bool:
                return (
                    r.get(keys.user_key("alice")) == b"A" and r.hget(keys.session_key("alice"), "lastClientId") == b"3"
                )

            await eventually(reconciled, timeout_s=4)

            async def healthy() -> bool:
                return await _health(http, rs) == (200, {**body_ok, "registry": "ok"})

            body_ok = {"status": "serving", "serverId": "A", "connections": 1, "draining": False}
            await eventually(healthy, timeout_s=3)
            await send(ws, 3, 3)
            assert await recv_json(ws) == {"type": "ack", "id": 3, "duplicate": True}
            await send(ws, 4, 4)
            assert (await recv_json(ws))["seq"] == 4
            assert (await recv_json(ws))["id"] == 4
            assert r.hget(keys.session_key("alice"), "lastServerSeq") == b"4"

            await eventually(lambda: r.pubsub_numsub(keys.drain_key("A"))[0][1] == 1, timeout_s=3)
            notice = keys.DrainNotice(server_id="A", source="twin")
            r.publish(keys.drain_key("A"), notice.to_json())  # the subscription came back too
            frame = await recv_json(ws, timeout_s=5)
            assert frame["type"] == "reconnect"
            r.close()

    run(go(), timeout_s=25)


def test_registry_down_accept_policy_serves_and_registers_later(make_redis) -> None:
    """With registry_down_policy=accept a handshake during the outage is served (fresh session) and its
    route is registered once Redis returns."""
    rsrv: RedisServer = make_redis()

    async def go() -> None:
        settings = fast(registry_down_policy="accept")
        async with server(settings, redis_url=rsrv.url, server_id="A") as rs, aiohttp.ClientSession() as http:
            rsrv.kill()
            ws, first = await connect(http, rs, "carol")
            assert first["resumed"] is False
            await send(ws, 1, "x")
            assert (await recv_json(ws))["type"] == "message"
            await asyncio.to_thread(rsrv.start)
            r = redis.Redis.from_url(rsrv.url)
            await eventually(lambda: r.get(keys.user_key("carol")) == b"A", timeout_s=4)
            stored = r.hgetall(keys.session_key("carol"))
            assert (stored[b"sid"], stored[b"lastClientId"]) == (first["sessionId"].encode(), b"1")
            assert (stored[b"outFirst"], stored[b"m:1"]) == (b"1", b'"x"')
            r.close()
            await ws.close()

    run(go(), timeout_s=25)


def test_server_starts_with_redis_unreachable() -> None:
    """A server whose Redis is not reachable at start still starts: /health 200 degraded, handshakes 503."""
    from stickyws.localproc import free_port

    async def go() -> None:
        dead = f"redis://127.0.0.1:{free_port()}/0"
        async with server(redis_url=dead) as rs, aiohttp.ClientSession() as http:

            async def degraded() -> bool:
                return await _health(http, rs) == (
                    200,
                    {"status": "serving", "serverId": "srv-a", "connections": 0, "draining": False,
                     "registry": "degraded"},
                )  # fmt: skip

            await eventually(degraded, timeout_s=3)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url(rs, token=token("a")))
            assert refused.value.status == 503

    run(go())
