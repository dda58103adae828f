"""A client is shown a push only once a replica holds it: live, by a catch-up read, and by a resume's replay.

Against a real redis-server primary with one real replica (``--replicaof``), and the slot's replica of the
local Redis Cluster; the replica is stopped (SIGSTOP) so nothing can be replicated, then continued.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis

from stickyws import keys
from stickyws.localcluster import LocalCluster
from stickyws.localproc import RedisServer, pid_alive
from stickyws.publish import Publisher, PublishError
from stickyws.server.core import Connection
from stickyws.server.ws_adapter import RunningServer
from tests.server.helpers import connect, eventually, fast, link_replica, recv_json, run, server

pytestmark = pytest.mark.redis

#: How long a push or a catch-up read waits for the replica here.
WAIT_MS = 300


class Pair:
    """A primary and its replica, both real redis-server processes of this test."""

    def __init__(self, primary: RedisServer, replica: RedisServer) -> None:
        self.primary, self.replica = primary, replica

    @property
    def pids(self) -> list[int]:
        """PIDs of both processes while they run."""
        return [pid for pid in (self.primary.pid, self.replica.pid) if pid is not None]


@contextlib.contextmanager
def primary_with_replica() -> Iterator[Pair]:
    """Start a primary and a replica of it; stop both by PID at the end (continuing a stopped replica first)."""
    with RedisServer() as primary, RedisServer() as replica:
        link_replica(primary.url, replica.url)
        pair = Pair(primary, replica)
        try:
            yield pair
        finally:
            if replica.pid is not None:
                os.kill(replica.pid, signal.SIGCONT)


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """SIGSTOP ``pid`` for the block (SIGCONT on the way out, also on failure)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def wait_calls(primary: Any) -> int:
    """How many ``WAIT`` commands the primary has run (``INFO commandstats``)."""
    stats = await primary.info("commandstats")
    entry = stats.get("cmdstat_wait", {})
    if isinstance(entry, dict):
        return int(entry.get("calls", 0))
    found = re.search(r"calls=(\d+)", str(entry))
    return int(found.group(1)) if found else 0


async def waits_reach(primary: Any, calls: int) -> bool:
    """Whether the primary has run ``calls`` WAITs (each catch-up read no replica confirmed runs one)."""
    return await wait_calls(primary) >= calls


@contextlib.asynccontextmanager
async def served(url: str, **overrides: Any) -> AsyncIterator[tuple[RunningServer, Publisher, aiohttp.ClientSession]]:
    """A server and a backend publisher on ``url`` with :data:`WAIT_MS` and ``overrides``."""
    settings = fast(ack_wait_timeout_ms=WAIT_MS, **overrides)
    async with (
        server(settings, redis_url=url) as rs,
        aiohttp.ClientSession() as http,
        Publisher(url, settings=settings) as pub,
    ):
        yield rs, pub, http


async def unconfirmed(pub: Publisher, user: str, n: int) -> None:
    """Push ``{"n": n}`` with key ``k<n>`` and expect it unanswered: no replica confirmed it."""
    with pytest.raises(PublishError) as caught:
        await pub.send_to_user(user, {"n": n}, key=f"k{n}")
    assert caught.value.code == "registry_unavailable"
    assert "retry with the same key" in str(caught.value)


def message(seq: int) -> dict[str, Any]:
    """The frame of push ``{"n": seq}`` as seq ``seq``."""
    return {"type": "message", "seq": seq, "data": {"n": seq}}


async def recheck_withholds_until_replicated(url: str, replica_pid: int, primary: Any, user: str) -> None:
    """The recheck scenario, on one primary or on a cluster (``primary``: a client of the user's primary)."""
    async with served(url) as (rs, pub, http):
        ws, _ = await connect(http, rs, user)
        assert (await pub.send_to_user(user, {"n": 1}, key="k1")).seq == 1
        assert await recv_json(ws) == message(1)
        conn: Connection = rs.core.by_user[user]
        with stopped(replica_pid):
            await unconfirmed(pub, user, 2)  # stored on the primary as seq 2, never announced
            before = await wait_calls(primary)
            await rs.core.recheck()  # reads seq 2 back from the primary, as after a resubscription
            assert (conn.cursor.sent, conn.filling) == (1, True)  # withheld, and read again in the background
            # The read is made again, unconfirmed each time (one WAIT per read):
            await eventually(lambda: waits_reach(primary, before + 3), timeout_s=5)
            assert conn.cursor.sent == 1
        assert await recv_json(ws, timeout_s=5) == message(2)  # shown once the replica holds it
        again = await pub.send_to_user(user, {"n": 2}, key="k2")  # the backend's retry: the same seq, stored once
        assert (again.seq, again.duplicate) == (2, True)
        assert (await pub.send_to_user(user, {"n": 3}, key="k3")).seq == 3
        assert await recv_json(ws) == message(3)  # seq 2 was not shown twice
        assert not conn.filling
        await ws.close()


def test_a_recheck_shows_a_push_only_once_the_replica_holds_it() -> None:
    """With the replica stopped, a recheck that reads an unreplicated push back shows nothing and reads again; the
    push is shown once, when the replica is continued, and the backend's retry keeps its seq."""
    with primary_with_replica() as pair:
        started = pair.pids
        replica_pid = pair.replica.pid
        assert replica_pid is not None

        async def go() -> None:
            primary = aioredis.Redis.from_url(pair.primary.url)
            try:
                await recheck_withholds_until_replicated(pair.primary.url, replica_pid, primary, "ann")
            finally:
                await primary.aclose()

        run(go(), timeout_s=30)
    assert len(started) == 2
    assert not any(pid_alive(pid) for pid in started)


def test_a_resume_replays_a_stored_push_only_once_the_replica_holds_it() -> None:
    """A push to an offline user is not answered while the replica is stopped; a resume then shows none of the
    replay (nor a gap) until the replica is continued, and then shows the push once."""
    with primary_with_replica() as pair:
        started = pair.pids
        replica_pid = pair.replica.pid
        assert replica_pid is not None

        async def go() -> None:
            primary = aioredis.Redis.from_url(pair.primary.url)
            async with served(pair.primary.url) as (rs, pub, http):
                ws, first = await connect(http, rs, "bea")
                assert (await pub.send_to_user("bea", {"n": 1}, key="k1")).seq == 1
                assert await recv_json(ws) == message(1)
                await ws.close()

                async def released() -> bool:
                    return "bea" not in rs.core.by_user and await rs.core.registry.owner("bea") is None

                await eventually(released)
                with stopped(replica_pid):
                    await unconfirmed(pub, "bea", 2)  # stored as seq 2, not answered
                    ws, again = await connect(http, rs, "bea", resume=first["resumeToken"], last_seq=1)
                    assert (again["resumed"], again["lastServerSeq"]) == (True, 2)
                    conn: Connection = rs.core.by_user["bea"]
                    assert (conn.cursor.sent, conn.filling) == (1, True)  # replay withheld, read again
                    before = await wait_calls(primary)
                    await eventually(
                        lambda: waits_reach(primary, before + 2), timeout_s=5
                    )  # read again, unconfirmed each time
                    assert conn.cursor.sent == 1
                assert await recv_json(ws, timeout_s=5) == message(2)
                again_push = await pub.send_to_user("bea", {"n": 2}, key="k2")
                assert (again_push.seq, again_push.duplicate) == (2, True)
                assert (await pub.send_to_user("bea", {"n": 3}, key="k3")).seq == 3
                assert await recv_json(ws) == message(3)
                await ws.close()
            await primary.aclose()

        run(go(), timeout_s=30)
    assert not any(pid_alive(pid) for pid in started)


def test_a_push_after_a_timed_out_one_still_waits_for_the_replica() -> None:
    """While the replica is stopped every push goes unanswered and unshown, not only the first one; retried
    with their keys after it is continued, they are shown once each, in order."""
    with primary_with_replica() as pair:
        started = pair.pids
        replica_pid = pair.replica.pid
        assert replica_pid is not None

        async def go() -> None:
            async with served(pair.primary.url) as (rs, pub, http):
                ws, _ = await connect(http, rs, "cai")
                assert (await pub.send_to_user("cai", {"n": 1}, key="k1")).seq == 1
                assert await recv_json(ws) == message(1)
                with stopped(replica_pid):
                    await unconfirmed(pub, "cai", 2)
                    await unconfirmed(pub, "cai", 3)  # the lane saw a timeout: it still waits for the replica
                    assert rs.core.by_user["cai"].cursor.sent == 1
                for n in (2, 3):
                    retry = await pub.send_to_user("cai", {"n": n}, key=f"k{n}")
                    assert (retry.status, retry.seq, retry.duplicate) == ("sent", n, True)
                assert [await recv_json(ws), await recv_json(ws)] == [message(2), message(3)]
                await ws.close()

        run(go(), timeout_s=30)
    assert not any(pid_alive(pid) for pid in started)


def test_ack_wait_replicas_0_answers_and_reads_without_waiting() -> None:
    """With ack_wait_replicas=0 a push is answered and shown at once while the replica is stopped, and a
    catch-up read returns it without a WAIT: the behaviour before replicas were waited for."""
    with primary_with_replica() as pair:
        started = pair.pids
        replica_pid = pair.replica.pid
        assert replica_pid is not None

        async def go() -> None:
            primary = aioredis.Redis.from_url(pair.primary.url)
            async with served(pair.primary.url, ack_wait_replicas=0) as (rs, pub, http):
                ws, first = await connect(http, rs, "dan")
                with stopped(replica_pid):
                    before = await wait_calls(primary)
                    assert (await pub.send_to_user("dan", {"n": 1}, key="k1")).seq == 1
                    assert await recv_json(ws) == message(1)
                    read = await rs.core.registry.read_outbox(
                        user_id="dan", session_id=first["sessionId"], first_seq=1, last_seq=5
                    )
                    assert (read.entries, read.last_seq) == ({1: '{"n":1}'}, 1)
                    assert await wait_calls(primary) == before
                await ws.close()
            await primary.aclose()

        run(go(), timeout_s=30)
    assert not any(pid_alive(pid) for pid in started)


def test_on_a_cluster_a_recheck_shows_a_push_only_once_the_slot_s_replica_holds_it(
    redis_cluster: LocalCluster, cluster_url: str
) -> None:
    """The recheck scenario on the local Redis Cluster, with the replica of the user's slot stopped."""
    probe: Any = redis.RedisCluster.from_url(cluster_url)
    try:
        node = probe.get_node_from_key(keys.session_key("eve"))
    finally:
        probe.close()
    nodes = redis_cluster.topology()
    primary_id = next(n.node_id for n in nodes if n.port == node.port)
    replica_ports = {m.port for m in nodes if m.primary_id == primary_id}
    replica = next(n for n in redis_cluster.nodes if n.port in replica_ports)
    assert replica.pid is not None
    replica_pid = replica.pid

    async def go() -> None:
        primary = aioredis.Redis(host="127.0.0.1", port=node.port)
        try:
            await recheck_withholds_until_replicated(cluster_url, replica_pid, primary, "eve")
        finally:
            await primary.aclose()

    run(go(), timeout_s=30)
    redis_cluster.wait_until_ok()
