"""The outbox rule has one Python definition (stickyws.registry.records) and one Lua copy (scripts/outbox.lua):
on a real redis-server, the commit and push scripts keep exactly what the Python rule keeps."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
import redis

from stickyws import keys
from stickyws.registry.records import Commit, OutboxEntry, OutboxLimits, SessionRecord, append_outbox
from stickyws.registry.redis_registry import RedisRegistry
from tests.server.helpers import run

pytestmark = pytest.mark.redis

#: (limits, batches of payloads): each batch is one commit, or one push per payload.
CASES: dict[str, tuple[OutboxLimits, list[list[str]]]] = {
    "by count": (OutboxLimits(3, 1 << 20), [['"a"'], ['"b"', '"c"'], ['"d"', '"e"', '"f"', '"g"'], ['"h"']]),
    "by UTF-8 bytes": (OutboxLimits(100, 20), [['"é"', '"aaaa"'], ['"ü€"'], ['"bbbbbbbbb"', '"ÿ"'], ['"c"']]),
    "newest stays over the bytes": (OutboxLimits(10, 5), [['"x"'], ['"a payload over five bytes"'], ['"y"']]),
    "a batch larger than the limit": (OutboxLimits(2, 1 << 20), [['"1"', '"2"', '"3"', '"4"', '"5"'], ['"6"']]),
    "exactly at the bytes": (OutboxLimits(100, 12), [['"ab"', '"cd"'], ['"é"'], ['"gh"']]),
    "count and bytes at once": (OutboxLimits(4, 16), [['"ab"', '"cd"', '"€€"'], ['"ef"', '"gh"'], ['"ijklmnop"']]),
}


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client of the registry, to read the session hash the scripts wrote."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _python_rule(limits: OutboxLimits, batches: Sequence[Sequence[str]]) -> tuple[OutboxEntry, ...]:
    outbox: tuple[OutboxEntry, ...] = ()
    seq = 1
    for batch in batches:
        outbox = append_outbox(outbox, seq, batch, limit=limits.max_messages, max_bytes=limits.max_bytes)
        seq += len(batch)
    return outbox


def _stored(raw: redis.Redis, user_id: str) -> tuple[tuple[OutboxEntry, ...], int, int]:
    """The outbox the hash holds, its ``outFirst`` and its ``outBytes``."""
    fields = raw.hgetall(keys.session_key(user_id))
    outbox = tuple(sorted((int(k[2:]), v.decode()) for k, v in fields.items() if k.startswith(b"m:")))
    return outbox, int(fields[b"outFirst"]), int(fields[b"outBytes"])


def _expected(outbox: tuple[OutboxEntry, ...]) -> tuple[tuple[OutboxEntry, ...], int, int]:
    return outbox, outbox[0][0], sum(len(p.encode()) for _, p in outbox)


async def _open(reg: RedisRegistry, user_id: str, limits: OutboxLimits) -> SessionRecord:
    claim = await reg.handshake(user_id=user_id, server_id="A", session_id="S", resume=False,
                                reject_live_owner=False, routing_ttl_s=60, session_ttl_s=60, limits=limits)  # fmt: skip
    assert claim.session is not None
    return claim.session


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_commit_script_trims_as_the_python_rule(case: str, redis_url: str, raw: redis.Redis) -> None:
    """Commits of each batch leave in Redis exactly the outbox the Python rule computes for the same limits."""
    limits, batches = CASES[case]

    async def go() -> None:
        reg = RedisRegistry(redis_url)
        try:
            record = await _open(reg, "u", limits)
            for msg_id, batch in enumerate(batches, start=1):
                result = await reg.commit(record, Commit(msg_id, tuple(batch)), server_id="A", routing_ttl_s=60,
                                          session_ttl_s=60, limits=limits)  # fmt: skip
                record = result.record
        finally:
            await reg.close()

    run(go())
    assert _stored(raw, "u") == _expected(_python_rule(limits, batches))


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_push_script_trims_as_the_python_rule(case: str, redis_url: str, raw: redis.Redis) -> None:
    """Pushes of each payload, one at a time, leave in Redis exactly the outbox the Python rule computes."""
    limits, batches = CASES[case]
    payloads = [p for batch in batches for p in batch]

    async def go() -> None:
        reg = RedisRegistry(redis_url, ack_wait_replicas=0)
        try:
            await _open(reg, "u", limits)
            await reg.release("u", "A")  # no route: each push is stored, none announced
            for seq, payload in enumerate(payloads, start=1):
                assert (await reg.push(user_id="u", payload=payload)).as_dict()["seq"] == seq
        finally:
            await reg.close()

    run(go())
    assert _stored(raw, "u") == _expected(_python_rule(limits, [[p] for p in payloads]))
