"""The local Redis Cluster: it forms with 3 primaries + 3 replicas, fails over on kill -9 and leaves nothing running."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from stickyws.localcluster import LocalCluster

pytestmark = pytest.mark.redis


def test_cluster_forms_three_shards_with_a_replica_each(redis_cluster: LocalCluster, cluster_url: str) -> None:
    """Three primaries split the 16384 slots, each has one replica, and a cross-slot command is refused."""
    states = redis_cluster.topology()
    primaries = [s for s in states if s.role == "master"]
    replicas = [s for s in states if s.role == "slave"]
    assert len(primaries) == 3
    assert sum(s.slots for s in primaries) == 16384
    assert all(s.slots > 5000 for s in primaries)
    assert sorted(r.primary_id for r in replicas if r.primary_id) == sorted(p.node_id for p in primaries)
    assert len({n.port for n in redis_cluster.nodes} | {n.bus_port for n in redis_cluster.nodes}) == 12

    node = redis.Redis.from_url(cluster_url)
    with pytest.raises(redis.ResponseError, match="don't hash to the same slot"):
        node.execute_command("MSET", "{a}x", "1", "{b}y", "2")
    node.close()
    client = RedisCluster.from_url(cluster_url)
    client.mset_nonatomic({"{a}x": "1", "{b}y": "2", "{c}z": "3"})
    assert client.mget_nonatomic(["{a}x", "{b}y", "{c}z"]) == [b"1", b"2", b"3"]
    client.close()


def test_kill_minus_nine_of_a_primary_fails_over_to_its_replica(redis_cluster: LocalCluster, cluster_url: str) -> None:
    """SIGKILL of a primary: its replica owns the slots within the bound, the data written before is there."""
    client = RedisCluster.from_url(cluster_url)
    victim = redis_cluster.primary_nodes()[0]
    victim_id = next(s.node_id for s in redis_cluster.topology() if s.port == victim.port)
    key = next(f"k{i}" for i in range(1000) if client.get_node_from_key(f"k{i}").port == victim.port)
    client.set(key, "before")
    client.wait(1, 1000, target_nodes=client.get_node_from_key(key))  # the replica has it
    client.close()

    killed = redis_cluster.kill_primary(victim)
    failover = redis_cluster.wait_for_failover(killed, timeout_s=20)
    try:
        assert failover.killed_port == victim.port
        assert failover.new_primary_port != victim.port
        assert failover.seconds < 20
        states = redis_cluster.topology()
        assert next(s for s in states if s.node_id == victim_id).failed
        assert next(s for s in states if s.port == failover.new_primary_port).role == "master"
        fresh = RedisCluster.from_url(redis_cluster.url)
        assert fresh.get(key) == b"before"
        assert fresh.get_node_from_key(key).port == failover.new_primary_port
        fresh.close()
    finally:
        redis_cluster.restart(killed)
    assert killed.alive
    assert next(s for s in redis_cluster.topology() if s.port == killed.port).role == "slave"


def test_stop_leaves_no_process_or_directory() -> None:
    """A cluster that is stopped has no process left of those it started and no working directory."""
    cluster = LocalCluster(primaries=3, replicas=0).start()
    pids = cluster.pids
    root = Path(cluster.nodes[0].directory).parent
    assert len(pids) == 3
    cluster.stop()
    assert [pid for pid in pids if os.path.exists(f"/proc/{pid}")] == []
    assert not root.exists()


def test_one_shard_cluster_holds_every_slot_and_serves_cluster_clients() -> None:
    """primaries=1: one node owns all 16384 slots, a cluster client works on it, and stop leaves no process."""
    with LocalCluster(primaries=1, replicas=0) as cluster:
        (state,) = cluster.topology()
        assert (state.role, state.slots) == ("master", 16384)
        assert [n.port for n in cluster.primary_nodes()] == [cluster.nodes[0].port]
        assert cluster.cluster_info(cluster.nodes[0])["cluster_state"] == "ok"
        client = RedisCluster.from_url(cluster.url)
        client.mset_nonatomic({"{a}x": "1", "{b}y": "2"})
        assert client.mget_nonatomic(["{a}x", "{b}y"]) == [b"1", b"2"]
        assert client.execute_command("INFO", "cluster")["cluster_enabled"] == 1
        client.close()
        pids = cluster.pids
    assert len(pids) == 1
    assert not os.path.exists(f"/proc/{pids[0]}")


def test_bad_shapes_are_refused() -> None:
    """Fewer than 3 primaries or an out-of-range node timeout is refused before anything starts."""
    with pytest.raises(ValueError, match="primaries=2 is outside 1 or 3-16"):
        LocalCluster(primaries=2)
    with pytest.raises(ValueError, match="replicas=1 with primaries=1"):
        LocalCluster(primaries=1, replicas=1)
    with pytest.raises(ValueError, match="node_timeout_ms=50 is outside 100-60000"):
        LocalCluster(node_timeout_ms=50)
