"""The registry's pipelined Redis connection (``stickyws.registry.redis_lane``) against a real redis-server."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
import redis

from stickyws.localproc import RedisServer
from stickyws.registry.errors import LaneReplyError, LaneUnavailable
from stickyws.registry.redis_lane import LaneScript, RedisLane
from tests.server.helpers import link_replica, run

INCR_SCRIPT = LaneScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")


def _count_writes(lane: RedisLane) -> list[int]:
    """Wrap the lane's transport so each socket write is recorded (its size)."""
    writes: list[int] = []
    transport: Any = lane._transport
    original = transport.write

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(transport, name)

        def write(self, data: bytes) -> None:
            writes.append(len(data))
            original(data)

    lane._transport = Counting()  # type: ignore[assignment]
    return writes


def test_commands_of_one_loop_iteration_leave_in_one_write_and_resolve_in_order(redis_url: str) -> None:
    """200 commands queued in one iteration go out in one socket write, each future gets its own reply."""

    async def go() -> None:
        lane = RedisLane(redis_url)
        assert await lane.execute("PING") == b"PONG"
        writes = _count_writes(lane)
        replies = await asyncio.gather(
            *(lane.execute("INCR", "n") if i % 2 else lane.execute("ECHO", f"e{i}") for i in range(200))
        )
        assert len(writes) == 1
        assert replies == [i // 2 + 1 if i % 2 else f"e{i}".encode() for i in range(200)]
        await lane.close()

    run(go())


def test_evalsha_loads_the_script_again_after_the_cache_was_flushed(redis_url: str) -> None:
    """After SCRIPT FLUSH, evalsha answers through EVAL once and by its SHA again afterwards."""

    async def go() -> None:
        lane = RedisLane(redis_url)
        assert await lane.evalsha(INCR_SCRIPT, ["k"], [2]) == 2
        await lane.execute("SCRIPT", "FLUSH")
        assert await lane.execute("SCRIPT", "EXISTS", INCR_SCRIPT.sha) == [0]
        assert await lane.evalsha(INCR_SCRIPT, ["k"], [3]) == 5
        assert await lane.execute("SCRIPT", "EXISTS", INCR_SCRIPT.sha) == [1]
        await lane.close()

    run(go())


def test_an_error_reply_fails_only_its_own_command(redis_url: str) -> None:
    """A script error raises LaneReplyError with Redis's message; the commands around it succeed."""

    async def go() -> None:
        lane = RedisLane(redis_url)
        bad = LaneScript("return redis.call('NOSUCHCOMMAND')")
        results = await asyncio.gather(
            lane.execute("SET", "a", "1"), lane.evalsha(bad, [], []), lane.execute("GET", "a"), return_exceptions=True
        )
        assert results[0] == b"OK"
        assert results[2] == b"1"
        assert isinstance(results[1], LaneReplyError)
        assert "Unknown Redis command called from script" in str(results[1])
        await lane.close()

    run(go())


def test_a_lost_connection_fails_what_was_in_flight_and_the_next_call_reconnects(
    make_redis: Callable[[], RedisServer],
) -> None:
    """kill -9 of Redis fails the calls in flight with LaneUnavailable; after a restart the lane serves again."""

    async def go() -> None:
        srv = make_redis()
        lane = RedisLane(srv.url, connect_timeout_s=0.5)
        assert await lane.execute("PING") == b"PONG"
        blocked = lane.execute("BLPOP", "never", 5)  # in flight when Redis dies
        await asyncio.sleep(0.05)
        srv.kill()
        with pytest.raises(LaneUnavailable, match="connection lost"):
            await asyncio.wait_for(blocked, 2)
        with pytest.raises(LaneUnavailable, match="cannot connect"):
            await asyncio.wait_for(lane.execute("PING"), 2)
        srv.start()
        assert await asyncio.wait_for(lane.execute("PING"), 2) == b"PONG"
        await lane.close()

    run(go())


def test_a_silent_registry_times_out_the_calls_in_flight(make_redis: Callable[[], RedisServer]) -> None:
    """With Redis stopped (SIGSTOP), calls fail with TimeoutError after reply_timeout_s; it serves again after."""

    async def go() -> None:
        srv = make_redis()
        assert srv.pid is not None
        lane = RedisLane(srv.url, reply_timeout_s=0.3)
        assert await lane.execute("PING") == b"PONG"
        os.kill(srv.pid, signal.SIGSTOP)
        try:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(TimeoutError, match=r"did not answer within 0\.3 s"):
                await asyncio.wait_for(lane.execute("PING"), 3)
            assert 0.25 <= loop.time() - t0 < 1.5
        finally:
            os.kill(srv.pid, signal.SIGCONT)
        assert await asyncio.wait_for(lane.execute("PING"), 2) == b"PONG"
        await lane.close()

    run(go())


class _Provider:
    """A redis-py style credential provider (async)."""

    def __init__(self, username: str, password: str) -> None:
        self.calls = 0
        self._creds = (username, password)

    async def get_credentials_async(self) -> tuple[str, str]:
        self.calls += 1
        return self._creds


def test_credentials_from_the_url_or_a_provider_authenticate_and_wrong_ones_fail_clearly(
    make_redis: Callable[[], RedisServer],
) -> None:
    """An ACL user from the URL or a credential provider is authenticated; a wrong password is one clear error."""

    async def go() -> None:
        srv = make_redis()
        admin = redis.Redis.from_url(srv.url)
        admin.acl_setuser("svc", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all"])
        admin.close()
        port = srv.port
        url_lane = RedisLane(f"redis://svc:s3cret@127.0.0.1:{port}/1")
        assert await url_lane.execute("ACL", "WHOAMI") == b"svc"
        await url_lane.execute("SET", "db1", "x")
        provider = _Provider("svc", "s3cret")
        provided = RedisLane(f"redis://127.0.0.1:{port}/1", credential_provider=provider)
        assert await provided.execute("GET", "db1") == b"x"  # db 1 was selected
        assert provider.calls == 1
        wrong = RedisLane(f"redis://svc:nope@127.0.0.1:{port}/0")
        with pytest.raises(LaneUnavailable, match="cannot connect to the registry: LaneReplyError: WRONGPASS"):
            await wrong.execute("PING")
        for lane in (url_lane, provided, wrong):
            await lane.close()

    run(go())


def test_a_replica_answering_readonly_is_unavailable_not_an_error(make_redis: Callable[[], RedisServer]) -> None:
    """A write to a replica (a primary demoted by a failover) raises LaneUnavailable and drops the connection."""

    async def go() -> None:
        primary, replica = make_redis(), make_redis()
        client = redis.Redis.from_url(replica.url)
        client.replicaof("127.0.0.1", primary.port)
        client.close()
        lane = RedisLane(replica.url)
        with pytest.raises(LaneUnavailable, match="READONLY"):
            await lane.execute("SET", "k", "v")
        assert lane._transport is None or lane._transport.is_closing()
        await lane.close()

    run(go())


def test_close_fails_queued_calls_and_later_ones(redis_url: str) -> None:
    """close() fails what is queued with LaneUnavailable, and so does any call after it."""

    async def go() -> None:
        lane = RedisLane(redis_url)
        queued = lane.execute("PING")
        await lane.close()
        with pytest.raises(LaneUnavailable, match="closed"):
            await queued
        with pytest.raises(LaneUnavailable, match="closed"):
            await lane.execute("PING")

    run(go())


def test_subscriber_hands_out_messages_in_order_after_confirming_its_channels(redis_url: str) -> None:
    """subscribe() returns once Redis confirmed the channels; messages() gives every publication in order."""
    from stickyws.registry.redis_listener import RedisSubscriber

    async def go() -> None:
        sub = RedisSubscriber(redis_url)
        await sub.open()
        await sub.subscribe(["a", "b"], timeout_s=2)
        admin = redis.Redis.from_url(redis_url)
        assert dict(admin.pubsub_numsub("a", "b")) == {b"a": 1, b"b": 1}
        for i in range(300):
            admin.publish("a" if i % 3 else "b", str(i))
        got: list[tuple[bytes, bytes]] = []
        async with asyncio.timeout(5):
            while len(got) < 300:
                got.extend(await sub.messages())
        assert got == [(b"a" if i % 3 else b"b", str(i).encode()) for i in range(300)]
        sub.unsubscribe(["b"])
        async with asyncio.timeout(2):
            while dict(admin.pubsub_numsub("b"))[b"b"] != 0:  # noqa: ASYNC110 - bounded by the timeout
                await asyncio.sleep(0.02)
        admin.close()
        await sub.close()

    run(go())


def test_subscriber_stops_reading_past_its_buffer_and_resumes_without_losing_any(redis_url: str) -> None:
    """Past max_buffered unread messages the socket is paused; reading on gets all of them, in order."""
    from stickyws.registry.redis_listener import RedisSubscriber

    async def go() -> None:
        sub = RedisSubscriber(redis_url, max_buffered=50)
        await sub.open()
        await sub.subscribe(["c"], timeout_s=2)
        admin = redis.Redis.from_url(redis_url)
        pipe = admin.pipeline(transaction=False)
        for i in range(2000):
            pipe.publish("c", str(i))
        pipe.execute()
        admin.close()
        async with asyncio.timeout(5):
            while not sub._paused:  # noqa: ASYNC110 - bounded by the timeout
                await asyncio.sleep(0.01)
        got: list[bytes] = []
        async with asyncio.timeout(5):
            while len(got) < 2000:
                batch = await sub.messages()
                assert len(batch) <= 2000
                got.extend(data for _, data in batch)
        assert got == [str(i).encode() for i in range(2000)]
        await sub.close()

    run(go())


def test_subscriber_raises_once_its_connection_is_gone(make_redis: Callable[[], RedisServer]) -> None:
    """kill -9 of Redis: messages() hands out what was read, then raises LaneUnavailable (no silent hang)."""
    from stickyws.registry.redis_listener import RedisSubscriber

    async def go() -> None:
        srv = make_redis()
        sub = RedisSubscriber(srv.url)
        await sub.open()
        await sub.subscribe(["d"], timeout_s=2)
        admin = redis.Redis.from_url(srv.url)
        admin.publish("d", "last")
        admin.close()
        async with asyncio.timeout(2):
            assert await sub.messages() == [(b"d", b"last")]
        srv.kill()
        with pytest.raises(LaneUnavailable, match="connection lost"):
            async with asyncio.timeout(2):
                await sub.messages()
        await sub.close()

    run(go())


def test_wait_replicated_counts_the_primary_s_replicas_and_shares_one_wait(
    make_redis: Callable[[], RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    """With one replica, writes are confirmed by one shared WAIT; with none there is nothing to wait for; an
    ACL that forbids INFO waits for nothing and says so in one warning."""

    async def go() -> None:
        primary, replica = make_redis(), make_redis()
        alone = RedisLane(primary.url)
        await alone.execute("SET", "a", "1")
        assert await alone.wait_replicated(1, 200) == 0  # no replica yet: no WAIT at all
        await asyncio.to_thread(link_replica, primary.url, replica.url)
        lane = RedisLane(primary.url)
        await lane.execute("SET", "b", "2")
        assert await lane.replicas() == 1
        writes = _count_writes(lane)
        acks = await asyncio.gather(*(lane.wait_replicated(1, 1000) for _ in range(10)))
        assert acks == [1] * 10
        assert len(writes) == 1  # one WAIT for all ten callers
        admin = redis.Redis.from_url(primary.url)
        admin.acl_setuser("noinfo", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-info"])
        admin.close()
        limited = RedisLane(f"redis://noinfo:pw@127.0.0.1:{primary.port}/0")
        await limited.execute("SET", "c", "3")
        assert await limited.wait_replicated(1, 200) == 0
        assert "cannot read INFO replication" in caplog.text
        for each in (alone, lane, limited):
            await each.close()

    run(go())
