"""Scripts on a real local Redis Cluster through one lane per primary: MOVED and ASK are followed."""

from __future__ import annotations

import asyncio

import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from stickyws.localcluster import LocalCluster
from stickyws.localproc import pid_alive
from stickyws.registry.cluster_lanes import ClusterLanes
from stickyws.registry.redis_lane import LaneScript, RedisLane
from tests.server.helpers import run

pytestmark = pytest.mark.redis

INCR = LaneScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")


async def _lanes(url: str) -> tuple[RedisCluster, ClusterLanes]:
    cluster = RedisCluster.from_url(url)
    await cluster.initialize()
    return cluster, ClusterLanes(cluster, RedisLane(url))


def test_scripts_of_one_iteration_reach_each_primary_in_one_write(
    redis_cluster: LocalCluster, cluster_url: str
) -> None:
    """60 scripts on keys of three primaries, queued at once: each primary's lane writes once, all answers right."""

    async def go() -> None:
        cluster, lanes = await _lanes(cluster_url)
        ports = [n.port for n in redis_cluster.primary_nodes()]
        keys = [redis_cluster.key_on(ports[i % 3], f"w{i}:") for i in range(60)]
        assert await asyncio.gather(*(lanes.evalsha(INCR, [k], [1]) for k in keys[:3])) == [1, 1, 1]  # connected
        writes: dict[int, int] = {}
        for (_, port), lane in lanes._lanes.items():
            transport = lane._transport
            assert transport is not None
            original = transport.write

            def counting(data: bytes, port: int = port, original: object = original) -> None:
                writes[port] = writes.get(port, 0) + 1
                original(data)  # type: ignore[operator]

            transport.write = counting  # type: ignore[method-assign]
        replies = await asyncio.gather(*(lanes.evalsha(INCR, [k], [2]) for k in keys))
        assert replies == [3] * 3 + [2] * 57
        assert writes == {port: 1 for port in ports}
        await lanes.close()
        await cluster.aclose()

    run(go())


def test_moved_and_ask_are_followed_to_the_slot_s_new_owner() -> None:
    """A slot moved to another primary (MOVED) and a slot half-migrated (ASK): both scripts reach their key.

    On a cluster of its own (3 primaries, no replicas): moving slots must not disturb the shared one."""

    async def go(local: LocalCluster) -> None:
        cluster, lanes = await _lanes(local.url)
        src, dst = (n.port for n in local.primary_nodes()[:2])
        moved_key, ask_key = local.key_on(src, "mv:"), local.key_on(src, "ask:")
        assert await lanes.evalsha(INCR, [moved_key], [1]) == 1
        assert await lanes.evalsha(INCR, [ask_key], [1]) == 1
        await asyncio.to_thread(local.migrate, moved_key, src, dst, finish=True)
        assert await lanes.evalsha(INCR, [moved_key], [1]) == 2  # MOVED: the map was read again
        await asyncio.to_thread(local.migrate, ask_key, src, dst, finish=False)
        assert await lanes.evalsha(INCR, [ask_key], [1]) == 2  # ASK: ASKING + the script on dst
        on_dst = redis.Redis(host="127.0.0.1", port=dst)
        assert on_dst.get(moved_key) == b"2"
        pipe = on_dst.pipeline(transaction=False)  # the slot is still importing: ASKING on the same connection
        pipe.execute_command("ASKING")
        pipe.get(ask_key)
        assert pipe.execute() == [True, b"2"]
        on_dst.close()
        await lanes.close()
        await cluster.aclose()

    with LocalCluster(primaries=3, replicas=0) as local:
        started = local.pids
        run(go(local), timeout_s=30)
    assert len(started) == 3
    assert not any(pid_alive(pid) for pid in started)


def test_a_push_is_answered_only_once_a_replica_has_it(redis_cluster: LocalCluster, cluster_url: str) -> None:
    """With the slot's replica stopped, the backend is not answered (registry_unavailable after
    ack_wait_timeout_ms); sent again with the same key once the replica is back, the push keeps the seq it
    got and the client has it exactly once."""
    import os
    import signal

    import aiohttp

    from stickyws import keys
    from stickyws.publish import Publisher, PublishError
    from tests.server.helpers import connect, fast, recv_json, server

    async def go() -> None:
        settings = fast(ack_wait_timeout_ms=300)
        async with (
            server(settings, redis_url=cluster_url) as rs,
            aiohttp.ClientSession() as http,
            Publisher(cluster_url, settings=settings) as pub,
        ):
            ws, _ = await connect(http, rs, "rita")
            assert (await pub.send_to_user("rita", {"n": 1}, key="k1")).seq == 1
            assert await recv_json(ws) == {"type": "message", "seq": 1, "data": {"n": 1}}
            primary = pub.registry.client.get_node_from_key(keys.session_key("rita"))  # type: ignore[attr-defined]
            nodes = redis_cluster.topology()
            primary_id = next(n.node_id for n in nodes if n.port == primary.port)
            replica_ports = {m.port for m in nodes if m.primary_id == primary_id}
            replica = next(n for n in redis_cluster.nodes if n.port in replica_ports)
            assert replica.pid is not None
            os.kill(replica.pid, signal.SIGSTOP)
            try:
                with pytest.raises(PublishError) as unconfirmed:
                    await pub.send_to_user("rita", {"n": 2}, key="k2")
                assert unconfirmed.value.code == "registry_unavailable"
                assert "retry with the same key" in str(unconfirmed.value)
            finally:
                os.kill(replica.pid, signal.SIGCONT)
            again = await pub.send_to_user("rita", {"n": 2}, key="k2")
            assert (again.seq, again.duplicate) == (2, True)
            assert (await pub.send_to_user("rita", {"n": 3}, key="k3")).seq == 3
            frames = [await recv_json(ws), await recv_json(ws)]
            assert frames == [
                {"type": "message", "seq": 2, "data": {"n": 2}},
                {"type": "message", "seq": 3, "data": {"n": 3}},
            ]

    run(go())
