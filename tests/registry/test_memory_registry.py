"""The in-memory registry keeps the session rules of stickyws.registry.records and answers commits, pushes and
resumes exactly as the Redis registry does for the same calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from stickyws.registry.interfaces import Registry
from stickyws.registry.memory import InMemoryRegistry
from stickyws.registry.records import OUTBOX_LIMIT, Commit, OutboxEntry, OutboxLimits, SessionRecord, append_outbox
from stickyws.registry.redis_registry import RedisRegistry
from tests.registry.test_outbox_rule import CASES
from tests.server.helpers import run


def _python_rule(limits: OutboxLimits, batches: Sequence[Sequence[str]]) -> tuple[OutboxEntry, ...]:
    outbox: tuple[OutboxEntry, ...] = ()
    seq = 1
    for batch in batches:
        outbox = append_outbox(outbox, seq, batch, limit=limits.max_messages, max_bytes=limits.max_bytes)
        seq += len(batch)
    return outbox


async def _open(reg: Registry, limits: OutboxLimits, *, resume: bool = False) -> SessionRecord:
    claim = await reg.handshake(user_id="u", server_id="A", session_id="S", resume=resume, reject_live_owner=False,
                                routing_ttl_s=60, session_ttl_s=60, replay_after=0 if resume else None,
                                limits=limits)  # fmt: skip
    assert claim.session is not None
    return claim.session


async def _commit(reg: Registry, record: SessionRecord, commit: Commit, limits: OutboxLimits) -> Any:
    return await reg.commit(record, commit, server_id="A", routing_ttl_s=60, session_ttl_s=60, limits=limits)


@pytest.mark.parametrize("case", sorted(CASES))
def test_commits_keep_what_the_python_rule_keeps(case: str) -> None:
    """Commits of each batch leave in the session exactly the outbox (and its first seq) the Python rule computes."""
    limits, batches = CASES[case]

    async def go() -> SessionRecord:
        reg = InMemoryRegistry()
        record = await _open(reg, limits)
        for msg_id, batch in enumerate(batches, start=1):
            record = (await _commit(reg, record, Commit(msg_id, tuple(batch)), limits)).record
        return await _open(reg, limits, resume=True)

    resumed = run(go())
    expected = _python_rule(limits, batches)
    assert (resumed.outbox, resumed.out_first) == (expected, expected[0][0])


@pytest.mark.parametrize("case", sorted(CASES))
def test_pushes_keep_what_the_python_rule_keeps(case: str) -> None:
    """Pushes of each payload, one at a time, leave in the session exactly the outbox the Python rule computes."""
    limits, batches = CASES[case]
    payloads = [p for batch in batches for p in batch]

    async def go() -> tuple[list[int | None], SessionRecord]:
        reg = InMemoryRegistry()
        await _open(reg, limits)
        seqs = [(await reg.push(user_id="u", payload=p)).seq for p in payloads]
        return seqs, await _open(reg, limits, resume=True)

    seqs, resumed = run(go())
    expected = _python_rule(limits, [[p] for p in payloads])
    assert seqs == list(range(1, len(payloads) + 1))
    assert (resumed.outbox, resumed.out_first) == (expected, expected[0][0])


def test_a_commit_answers_with_the_mirror_outbox_and_the_session_keeps_the_rest() -> None:
    """After 100 one-reply commits the answer's outbox is the newest OUTBOX_LIMIT replies (the mirror's size), with
    its character count and the confirmed seq, while a resume replays all 100 the session keeps."""
    limits = OutboxLimits(1000, 1 << 20)
    replies = [f'"reply {i}"' for i in range(1, 101)]

    async def go() -> tuple[SessionRecord, SessionRecord]:
        reg = InMemoryRegistry()
        record = await _open(reg, limits)
        for msg_id, reply in enumerate(replies, start=1):
            record = (await _commit(reg, record, Commit(msg_id, (reply,)), limits)).record
        return record, await _open(reg, limits, resume=True)

    last, resumed = run(go())
    assert last.outbox == tuple(enumerate(replies, start=1))[-OUTBOX_LIMIT:]
    assert (last.outbox_chars, last.synced_seq, last.last_server_seq) == (
        sum(len(r) for r in replies[-OUTBOX_LIMIT:]), 100, 100
    )  # fmt: skip
    assert resumed.outbox == tuple(enumerate(replies, start=1))


async def _script(reg: Registry, limits: OutboxLimits, batches: Sequence[Sequence[str]]) -> list[Any]:
    """Commits (one duplicate, a subscribe and an unsubscribe among them), pushes and a resume: every answer."""
    out: list[Any] = []
    record = await _open(reg, limits)
    msg_id = 0
    for batch in batches:
        msg_id += 1
        result = await _commit(reg, record, Commit(msg_id, tuple(batch)), limits)
        out.append((result, result.record.outbox_chars, result.record.synced_seq))
        record = result.record
    again = await _commit(reg, record, Commit(msg_id, tuple(batches[-1])), limits)
    out.append((again, again.record.outbox_chars, again.record.synced_seq))
    for op, topic in (("add", "news"), ("add", "alerts"), ("remove", "news")):
        msg_id += 1
        result = await _commit(reg, record, Commit(msg_id, (), op, topic), limits)
        out.append((result, result.record.outbox_chars, result.record.synced_seq))
        record = result.record
    out += [(await reg.push(user_id="u", payload=p)).as_dict() for p in ('"p1"', '"p2 é"')]
    out.append(await _open(reg, limits, resume=True))
    out.append(await reg.read_outbox(user_id="u", session_id="S", first_seq=1, last_seq=10_000))
    out.append(await reg.session_seqs(sessions=[("u", "S"), ("u", "other")]))
    return out


@pytest.mark.redis
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_in_memory_registry_answers_as_the_redis_registry(case: str, redis_url: str) -> None:
    """The same commits, duplicate, topic ops, pushes, resume and reads get equal answers from both registries."""
    limits, batches = CASES[case]

    async def go() -> tuple[list[Any], list[Any]]:
        redis_reg = RedisRegistry(redis_url, ack_wait_replicas=0)
        try:
            from_redis = await _script(redis_reg, limits, batches)
        finally:
            await redis_reg.close()
        return await _script(InMemoryRegistry(), limits, batches), from_redis

    from_memory, from_redis = run(go())
    assert from_memory == from_redis
