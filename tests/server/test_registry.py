"""Registry contracts: atomic claim, compare-and-delete, atomic dedup.

Every test that takes ``registry_url`` runs on one redis-server and on a local Redis Cluster, with the
same assertions; the in-memory registry's contracts are checked against the same rules.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import redis

from stickyws import keys, protocol
from stickyws.registry.memory import InMemoryRegistry
from stickyws.registry.records import (
    OUTBOX_LIMIT,
    OUTBOX_MAX_BYTES,
    Commit,
    OutboxLimits,
    SessionRecord,
    append_outbox,
)
from stickyws.registry.redis_registry import RedisRegistry
from stickyws.server.session import SessionState
from tests.server.helpers import connect, eventually, fast, run, server, token, url
from tests.server.registries import Admin

#: Registry limits equal to the connection mirror's, so both trims can be compared one to one.
MIRROR = OutboxLimits(OUTBOX_LIMIT, OUTBOX_MAX_BYTES)


def _live(r: redis.Redis | redis.RedisCluster, server_id: str, status: str = "serving") -> None:
    r.set(keys.heartbeat_key(server_id), json.dumps({"serverId": server_id, "status": status}), ex=30)


async def _claim(reg: RedisRegistry, server_id: str, user: str = "alice", *, reject: bool = True):
    return await reg.handshake(
        user_id=user, server_id=server_id, session_id=f"s-{server_id}", resume=False,
        reject_live_owner=reject, routing_ttl_s=60, session_ttl_s=60,
    )  # fmt: skip


def test_twenty_concurrent_claims_have_exactly_one_owner(registry_url: str, admin: Admin) -> None:
    """20 live servers claiming one user at once under reject: exactly one wins, 19 see it as the owner."""
    r = admin.client
    for i in range(20):
        _live(r, f"srv-{i}")

    async def go() -> None:
        reg = RedisRegistry(registry_url)
        try:
            results = await asyncio.gather(*(_claim(reg, f"srv-{i}") for i in range(20)))
        finally:
            await reg.close()
        winners = [i for i, res in enumerate(results) if res.claimed]
        assert len(winners) == 1
        owner = f"srv-{winners[0]}"
        assert r.get(keys.user_key("alice")) == owner.encode()
        assert {res.previous for res in results if not res.claimed} == {owner}
        assert r.ttl(keys.user_key("alice")) > 0

    run(go())


def test_concurrent_handshakes_across_servers_leave_one_connection(registry_url: str, admin: Admin) -> None:
    """20 simultaneous WebSocket handshakes of one user over 4 servers (reject): one server holds the user,
    the others answer 409, and exactly one connection stays open."""

    async def go() -> None:
        settings = fast(connection_policy="reject")
        async with (
            server(settings, redis_url=registry_url, server_id="A") as a,
            server(settings, redis_url=registry_url, server_id="B") as b,
            server(settings, redis_url=registry_url, server_id="C") as c,
            server(settings, redis_url=registry_url, server_id="D") as d,
            aiohttp.ClientSession() as http,
        ):
            servers = [a, b, c, d]
            await eventually(lambda: all(admin.client.get(keys.heartbeat_key(s)) for s in "ABCD"))  # all four live

            async def attempt(i: int):
                rs = servers[i % 4]
                try:
                    return rs, await http.ws_connect(url(rs, token=token("alice")))
                except aiohttp.WSServerHandshakeError as exc:
                    return rs, exc.status

            outcomes = await asyncio.gather(*(attempt(i) for i in range(20)))
            accepted = [(rs, ws) for rs, ws in outcomes if not isinstance(ws, int)]
            refused = [code for _, code in outcomes if isinstance(code, int)]
            assert accepted
            assert set(refused) <= {409}
            owner_ids = {rs.core.server_id for rs, _ in accepted}
            assert len(owner_ids) == 1
            r = admin.client
            assert r.get(keys.user_key("alice")).decode() in owner_ids
            await eventually(lambda: sum(len(rs.core.connections) for rs in servers) == 1)
            endings = []
            for _, ws in accepted:
                first = await ws.receive(timeout=1)
                assert first.type is aiohttp.WSMsgType.TEXT  # connected
                try:
                    msg = await ws.receive(timeout=0.3)
                    endings.append(msg.data)
                except TimeoutError:
                    endings.append("open")
            assert sorted(endings, key=str) == sorted(
                [protocol.CLOSE_TAKEN_OVER] * (len(accepted) - 1) + ["open"], key=str
            )
            for _, ws in accepted:
                await ws.close()

    run(go())


def test_release_is_compare_and_delete(registry_url: str, admin: Admin) -> None:
    """release() deletes the routing key only while this server owns it."""
    r = admin.client

    async def go() -> None:
        reg = RedisRegistry(registry_url)
        try:
            await _claim(reg, "A", reject=False)
            await _claim(reg, "B", reject=False)  # takeover: B owns alice now
            assert await reg.release("alice", "A") is False
            assert r.get(keys.user_key("alice")) == b"B"
            assert await reg.release("alice", "B") is True
            assert r.get(keys.user_key("alice")) is None
        finally:
            await reg.close()

    run(go())


def test_closing_a_taken_over_connection_keeps_the_new_route(registry_url: str, admin: Admin) -> None:
    """When server A's socket closes after B took the user over, A does not delete B's route; B's close does."""

    async def go() -> None:
        async with (
            server(redis_url=registry_url, server_id="A") as a,
            server(redis_url=registry_url, server_id="B") as b,
            aiohttp.ClientSession() as http,
        ):
            r = admin.client
            old, _ = await connect(http, a, "alice")
            new, _ = await connect(http, b, "alice")
            closing = await old.receive(timeout=3)
            assert closing.data == protocol.CLOSE_TAKEN_OVER
            await eventually(lambda: not a.core.connections)
            # A's read of the route is queued behind any release A sent for alice while closing (one lane per key).
            assert await a.core.registry.owner("alice") == "B"
            assert r.get(keys.user_key("alice")) == b"B"
            await new.close()
            await eventually(lambda: r.get(keys.user_key("alice")) is None)

    run(go())


def test_draining_owner_does_not_block_reject_policy(registry_url: str, admin: Admin) -> None:
    """Under reject, an owner whose heartbeat says draining or stopped, or has expired, causes no conflict."""
    r = admin.client

    async def go() -> None:
        reg = RedisRegistry(registry_url)
        try:
            _live(r, "A")
            assert (await _claim(reg, "A")).claimed
            _live(r, "B")
            assert not (await _claim(reg, "B")).claimed
            _live(r, "A", status="draining")
            res = await _claim(reg, "B")
            assert (res.claimed, res.previous) == (True, "A")
            _live(r, "C")
            _live(r, "B", status="stopped")
            res = await _claim(reg, "C")
            assert (res.claimed, res.previous) == (True, "B")
            r.delete(keys.heartbeat_key("C"))
            res = await _claim(reg, "D")
            assert (res.claimed, res.previous) == (True, "C")
        finally:
            await reg.close()

    run(go())


def test_commit_is_atomic_with_dedup_across_registries(registry_url: str, admin: Admin) -> None:
    """Ten commits of the same message id from two registries at once: exactly one is not a duplicate."""

    async def go() -> None:
        regs = [RedisRegistry(registry_url), RedisRegistry(registry_url)]
        try:
            claim = await _claim(regs[0], "A", reject=False)
            record = claim.session
            assert record is not None
            results = await asyncio.gather(
                *(
                    regs[i % 2].commit(record, Commit(1, ('"x"',)), server_id="A", routing_ttl_s=60, session_ttl_s=60)
                    for i in range(10)
                )
            )
            assert sum(not res.duplicate for res in results) == 1
            final = next(res for res in results if not res.duplicate)
            assert (final.first_seq, final.record.last_client_id, final.record.last_server_seq) == (1, 1, 1)
            sub = await regs[1].commit(
                final.record, Commit(2, (), "add", "news"), server_id="A", routing_ttl_s=60, session_ttl_s=60
            )
            assert sub.record.subscriptions == ("news",)
            r = admin.client
            stored = r.hgetall(keys.session_key(record.user_id))
            assert stored == {
                b"sid": record.session_id.encode(),
                b"outMax": b"1000",
                b"outMaxBytes": b"1048576",
                b"lastClientId": b"2",
                b"lastServerSeq": b"1",
                b"subs": b'["news"]',
                b"outFirst": b"1",
                b"outBytes": b"3",
                b"m:1": b'"x"',
            }
            assert sub.record.outbox == ((1, '"x"'),)
        finally:
            for reg in regs:
                await reg.close()

    run(go())


def test_a_commit_after_the_script_cache_was_flushed_is_answered_with_the_next_seq(
    registry_url: str, admin: Admin
) -> None:
    """After SCRIPT FLUSH the commit's packed EVALSHA is sent again as EVAL: the same answer, nothing doubled."""

    async def go() -> None:
        reg = RedisRegistry(registry_url)
        try:
            record = (await _claim(reg, "A", reject=False)).session
            assert record is not None
            first = await reg.commit(record, Commit(1, ('"a"',)), server_id="A", routing_ttl_s=60, session_ttl_s=60)
            admin.client.script_flush()
            second = await reg.commit(
                first.record, Commit(2, ('"b"', '"c"')), server_id="A", routing_ttl_s=60, session_ttl_s=60
            )
            assert (second.duplicate, second.first_seq, second.record.last_client_id) == (False, 2, 2)
            assert second.record.last_server_seq == 3
            assert second.record.outbox == ((1, '"a"'), (2, '"b"'), (3, '"c"'))
            stored = admin.client.hgetall(keys.session_key(record.user_id))
            assert (stored[b"lastServerSeq"], stored[b"m:2"], stored[b"m:3"]) == (b"3", b'"b"', b'"c"')
        finally:
            await reg.close()

    run(go())


def test_in_memory_registry_keeps_the_same_contracts() -> None:
    """The in-memory registry claims, compare-and-deletes and dedups like the Redis one."""

    async def go() -> None:
        reg = InMemoryRegistry()
        claim = await reg.handshake(user_id="u", server_id="A", session_id="s", resume=False,
                                    reject_live_owner=True, routing_ttl_s=60, session_ttl_s=60)  # fmt: skip
        assert claim.claimed
        assert claim.session == SessionRecord("s", "u")
        assert await reg.release("u", "B") is False
        commit = Commit(3, ("1", "2"))
        first = await reg.commit(claim.session, commit, server_id="A", routing_ttl_s=60, session_ttl_s=60)
        again = await reg.commit(claim.session, commit, server_id="A", routing_ttl_s=60, session_ttl_s=60)
        assert (first.duplicate, first.first_seq, again.duplicate) == (False, 1, True)
        assert await reg.release("u", "A") is True

    run(go())


def test_small_blocking_pool_absorbs_a_burst(registry_url: str) -> None:
    """A pool of 4 connections serves a burst of 200 concurrent claims by waiting, not failing."""

    async def go() -> None:
        reg = RedisRegistry(registry_url, pool_size=4)
        try:
            results = await asyncio.gather(*(_claim(reg, "A", user=f"u{i}", reject=False) for i in range(200)))
        finally:
            await reg.close()
        assert all(res.claimed for res in results)

    run(go())


def test_redis_outbox_trims_like_the_pure_rule_and_is_replayed_on_resume(registry_url: str, admin: Admin) -> None:
    """After 70 one-output commits the Redis outbox holds the newest OUTBOX_LIMIT messages, exactly what
    append_outbox computes, and a resume hands them back."""

    async def go() -> None:
        reg = RedisRegistry(registry_url)
        try:
            claim = await _claim(reg, "A", user="dora", reject=False)
            record = claim.session
            expected: tuple = ()
            for i in range(1, 71):
                res = await reg.commit(
                    record, Commit(i, (json.dumps(i),)), server_id="A", routing_ttl_s=60, session_ttl_s=60,
                    limits=MIRROR,
                )  # fmt: skip
                expected = append_outbox(expected, i, (json.dumps(i),))
                record = res.record
            assert record.outbox == expected
            assert [seq for seq, _ in expected] == list(range(71 - OUTBOX_LIMIT, 71))
            resumed = await reg.handshake(
                user_id="dora", server_id="B", session_id=record.session_id, resume=True,
                reject_live_owner=False, routing_ttl_s=60, session_ttl_s=60, replay_after=0,
            )  # fmt: skip
            assert resumed.resumed
            assert resumed.session == record
            assert record.out_first == 71 - OUTBOX_LIMIT
            r = admin.client
            fields = r.hkeys(keys.session_key(record.user_id))
            assert sum(f.startswith(b"m:") for f in fields) == OUTBOX_LIMIT
        finally:
            await reg.close()

    run(go())


def test_redis_outbox_trims_by_bytes(registry_url: str, admin: Admin) -> None:
    """Outputs of 100 kB each: the Redis outbox keeps what fits in OUTBOX_MAX_BYTES, as append_outbox does."""

    async def go() -> None:
        reg = RedisRegistry(registry_url)
        try:
            record = (await _claim(reg, "A", user="erin", reject=False)).session
            big = json.dumps("y" * 100_000)
            expected: tuple = ()
            for i in range(1, 5):
                record = (
                    await reg.commit(
                        record, Commit(i, (big,)), server_id="A", routing_ttl_s=60, session_ttl_s=60, limits=MIRROR
                    )
                ).record
                expected = append_outbox(expected, i, (big,))
            assert [seq for seq, _ in expected] == [3, 4]
            resumed = await reg.handshake(
                user_id="erin", server_id="A", session_id=record.session_id, resume=True,
                reject_live_owner=False, routing_ttl_s=60, session_ttl_s=60, replay_after=0,
            )  # fmt: skip
            assert resumed.session.outbox == expected
            r = admin.client
            assert int(r.hget(keys.session_key(record.user_id), "outBytes")) == 2 * len(big)
        finally:
            await reg.close()

    run(go())


def test_stale_takeover_request_does_not_close_a_connection_that_owns_the_route(
    registry_url: str, admin: Admin
) -> None:
    """A takeover request for a user whose route names this server again (they came back) is ignored;
    one whose route names the requester closes the connection with 4001."""

    async def go() -> None:
        async with server(redis_url=registry_url, server_id="A") as a, aiohttp.ClientSession() as http:
            ws, _ = await connect(http, a, "alice")
            r = admin.client
            await eventually(lambda: admin.subscribers(keys.takeover_channel("A")) == 1)
            request = json.dumps({"userId": "alice", "by": "B"})
            admin.publish(keys.takeover_channel("A"), request)
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=0.3)
            r.set(keys.user_key("alice"), "B")
            admin.publish(keys.takeover_channel("A"), request)
            msg = await ws.receive(timeout=3)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, protocol.CLOSE_TAKEN_OVER)

    run(go())


def test_reconcile_keeps_pushes_taken_while_down_after_the_locally_numbered_replies(registry_url: str) -> None:
    """A mirror that numbered replies 3-4 locally while a push got seq 3 in the registry: after reconcile the
    registry holds the replies at 3-4 and the push at 5, so no seq names two messages."""

    async def go() -> None:
        reg = RedisRegistry(registry_url)
        claim = await reg.handshake(user_id="lin", server_id="s1", session_id="S", resume=False,
                                    reject_live_owner=False, routing_ttl_s=60, session_ttl_s=60)  # fmt: skip
        assert claim.session is not None
        done = await reg.commit(claim.session, Commit(1, ('"r1"', '"r2"')), server_id="s1",
                                routing_ttl_s=60, session_ttl_s=60)  # fmt: skip
        mirror = SessionState.from_record(done.record)
        assert mirror.synced_seq == 2
        mirror.apply_local(Commit(2, ('"r3"', '"r4"')))  # the registry was unreachable for this server
        push = await reg.push(user_id="lin", payload='"p"')
        assert push.seq == 3
        assert await reg.reconcile("s1", [mirror.record()], routing_ttl_s=60, session_ttl_s=60) == []
        assert await reg.outbox_range(user_id="lin", session_id="S", first_seq=1, last_seq=5) == {
            1: '"r1"', 2: '"r2"', 3: '"r3"', 4: '"r4"', 5: '"p"',
        }  # fmt: skip
        assert await reg.session_seqs(sessions=[("lin", "S")]) == [5]
        again = await reg.commit(mirror.record(), Commit(3, ('"r5"',)), server_id="s1",
                                 routing_ttl_s=60, session_ttl_s=60)  # fmt: skip
        assert again.first_seq == 6
        await reg.close()

    run(go())
