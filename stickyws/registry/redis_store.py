"""The registry's store on Redis: the callers of its Lua scripts (:mod:`stickyws.registry.scripts`), so
every decision is one round trip, plus the few plain reads and writes (owner, heartbeats, drain notices,
reads in bulk).

Contracts are those of :class:`~stickyws.registry.interfaces.Routes`, :class:`~.interfaces.Sessions`,
:class:`~.interfaces.Topics` and :class:`~.interfaces.Liveness`; connections, the mode and the one
down-error mapping are :class:`~stickyws.registry.redis_connection.RedisConnection`'s. A publisher
needs nothing more (:mod:`stickyws.publish`); the server's registry adds the bus
(:class:`stickyws.registry.redis_registry.RedisRegistry`).

The replica wait (settings ``ack_wait_replicas``/``ack_wait_timeout_ms``): a commit is acknowledged
once a replica holds it (or none answers within the timeout: then commits stop waiting until the count
is read again); a push and a catch-up read wait for every attached replica up to that number, and fail
(``RegistryUnavailable``, ``NotYetReplicated``) rather than show what a failover could lose.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from stickyws import json_codec, keys
from stickyws.registry.errors import NotYetReplicated, RegistryUnavailable, SessionReplaced
from stickyws.registry.interfaces import (
    ClaimResult,
    OutboxRead,
    PushResult,
    TopicHistory,
    TopicPosition,
    heartbeat_is_live,
    history_after,
    topic_meta_ttl_s,
)
from stickyws.registry.records import (
    DEFAULT_OUTBOX_LIMITS,
    Commit,
    CommitResult,
    OutboxEntry,
    OutboxLimits,
    SessionRecord,
    extend_outbox,
)
from stickyws.registry.redis_connection import DOWN_ERRORS, RedisConnection, as_text
from stickyws.registry.redis_lane import RedisLane, pack_command
from stickyws.registry.scripts import (
    COMMIT,
    HANDSHAKE,
    OUTBOX_READ,
    PUBLISH_TOPIC,
    PUSH,
    RECONCILE,
    RELEASE,
    TOPIC_SINCE,
)
from stickyws.registry.wire import Publication

#: The push script builds the owner's push channel from these two parts around the server id.
_PUSH_PREFIX, _, _PUSH_SUFFIX = keys.push_channel("\x00").partition("\x00")


@functools.lru_cache(maxsize=4096)
def _subs(value: Any) -> tuple[str, ...]:
    """The sorted topics of a session hash's ``subs`` field (cached: most sessions share a few sets)."""
    try:
        parsed = json.loads(as_text(value)) if value is not None else []
    except ValueError:
        return ()
    return tuple(sorted(str(t) for t in parsed)) if isinstance(parsed, list) else ()


@functools.lru_cache(maxsize=16384)
def _session_keys(user_id: str) -> tuple[str, str]:
    """KEYS of the commit and push scripts: the user's session and routing keys (kept for the
    16,384 users seen last: a commit per message would escape the id twice again)."""
    return keys.session_key(user_id), keys.user_key(user_id)


@functools.lru_cache(maxsize=16384)
def _commit_head(user_id: str, constants: tuple[str | int, ...], parts: int) -> bytes:
    """The packed start of a commit's ``EVALSHA`` of ``parts`` parts in all: the SHA, the user's keys and
    ``constants`` (the leading ``ARGV`` that stay the same for a session), behind which the rest is packed
    per message (packing all 19 parts took 4.3 us, the 8 that change 1.7 us)."""
    head = pack_command((b"EVALSHA", COMMIT.sha, 2, *_session_keys(user_id), *constants))
    return b"*%d\r\n" % parts + head[head.index(b"\n") + 1 :]


def _outbox(flat: Sequence[Any]) -> tuple[OutboxEntry, ...]:
    """``[seq1, payload1, seq2, payload2, ...]`` from the handshake script as outbox entries."""
    return tuple((int(flat[i]), as_text(flat[i + 1])) for i in range(0, len(flat) - 1, 2))


def _outbox_json(outbox: Sequence[OutboxEntry]) -> str:
    return json.dumps([[seq, text] for seq, text in outbox], separators=(",", ":"))


def _subs_json(subs: Sequence[str]) -> str:
    return json.dumps(sorted(subs), separators=(",", ":"))


class RedisStore(RedisConnection):
    """Routes, sessions, topics and liveness on Redis: one primary, or a Redis Cluster (see the module
    docstring; the options are :class:`~stickyws.registry.redis_connection.RedisConnection`'s). On a
    cluster every script runs in the slot of its keys (all of one user's or one topic's, see
    :mod:`stickyws.keys`) on the lane of the primary that owns the slot."""

    async def handshake(
        self,
        *,
        user_id: str,
        server_id: str,
        session_id: str,
        resume: bool,
        reject_live_owner: bool,
        routing_ttl_s: int,
        session_ttl_s: int,
        replay_after: int | None = None,
        limits: OutboxLimits = DEFAULT_OUTBOX_LIMITS,
    ) -> ClaimResult:
        call_keys = [keys.user_key(user_id), keys.session_key(user_id)]
        gone = ""
        for _ in range(3):  # under reject: claim, or find the owner, check its heartbeat, claim if it is gone
            args: list[str | int] = [
                server_id, routing_ttl_s, "1" if reject_live_owner else "0", gone, session_id, "1" if resume else "0",
                session_ttl_s, "" if replay_after is None else replay_after, limits.max_messages, limits.max_bytes,
            ]  # fmt: skip
            reply, lane = await self._run(HANDSHAKE, call_keys, args)
            if reply[0] == 1:
                break
            owner = as_text(reply[1])
            beat = await self._call(lambda: self._client.get(keys.heartbeat_key(owner)))  # noqa: B023
            if heartbeat_is_live(as_text(beat) if beat is not None else None):
                return ClaimResult(False, owner)
            gone = owner
        else:
            return ClaimResult(False, as_text(reply[1]))
        previous = as_text(reply[1]) if reply[1] is not None else None
        record = SessionRecord(
            session_id, user_id, int(reply[3]), int(reply[4]), _subs(reply[5]), _outbox(reply[7:]), int(reply[6])
        )
        # The script wrote the route, so a WAIT on its connection covers the replayed messages too.
        confirmed = len(reply) <= 7 or await self._replicated(lane)
        return ClaimResult(True, previous, record, bool(reply[2]), replay_confirmed=confirmed)

    async def release(self, user_id: str, server_id: str) -> bool:
        deleted, _ = await self._run(RELEASE, [keys.user_key(user_id)], [server_id])
        return bool(deleted)

    async def owner(self, user_id: str) -> str | None:
        value = await self._call(lambda: self._client.get(keys.user_key(user_id)))
        return as_text(value) if value is not None else None

    async def commit(
        self,
        record: SessionRecord,
        commit: Commit,
        *,
        server_id: str,
        routing_ttl_s: int,
        session_ttl_s: int,
        limits: OutboxLimits = DEFAULT_OUTBOX_LIMITS,
    ) -> CommitResult:
        constants = (
            record.session_id, session_ttl_s, server_id, routing_ttl_s, limits.max_messages, limits.max_bytes
        )  # fmt: skip
        tail = (
            commit.msg_id, commit.topic_op, commit.topic, json_codec.dumps(commit.payloads), record.last_client_id,
            record.last_server_seq, "", "",
        )  # fmt: skip
        args: list[str | int] = [*constants, *tail]
        call_keys = _session_keys(record.user_id)
        lane = self.lane
        # One primary: the constants packed once per session, and no coroutine between here and the lane.
        if type(lane) is RedisLane:
            head = _commit_head(record.user_id, constants, 5 + len(args))
            packed_tail = pack_command(tail)
            try:
                packed = head + packed_tail[packed_tail.index(b"\n") + 1 :]
                reply = await lane.evalsha_packed(COMMIT, packed, call_keys, args)
            except DOWN_ERRORS as exc:  # as in _run
                raise self._down(exc) from None
            self.available = True
        else:
            reply, lane = await self._run(COMMIT, call_keys, args)
        if reply[0] == 3:  # the hash is gone (e.g. Redis restarted): send the mirror once, then as before
            args[12], args[13] = _subs_json(record.subscriptions), _outbox_json(record.outbox) or "[]"
            reply, lane = await self._run(COMMIT, call_keys, args)
        if self._ack_wait_replicas and reply[0] == 0 and not lane.nothing_to_wait_for():
            # Acknowledged only once a replica holds it: a failover then cannot lose this seq and hand it
            # to a later push.
            try:
                await lane.wait_replicated(self._ack_wait_replicas, self._ack_wait_timeout_ms)
            except DOWN_ERRORS as exc:
                raise self._down(exc) from None
        if reply[0] == 4:
            raise SessionReplaced(record.session_id)
        duplicate, first_seq = bool(reply[0]), int(reply[1])
        # The outbox mirror is computed here with the script's trimming rule (append_outbox, at the mirror's
        # own small limits) rather than read back, so a commit never ships the outbox over the wire.
        if duplicate:
            outbox, chars = record.outbox, record.outbox_chars
        else:
            outbox, chars = extend_outbox(record.outbox, first_seq, commit.payloads, chars=record.outbox_chars)
        new = SessionRecord(
            record.session_id, record.user_id, reply[2], reply[3], _subs(reply[4]), outbox, reply[5], chars, reply[3]
        )
        return CommitResult(duplicate, first_seq, new)

    async def push(self, *, user_id: str, payload: str, key: str | None = None) -> PushResult:
        call_keys = [*_session_keys(user_id), keys.push_key(user_id, key or "")]
        try:
            lanes = await self._lanes()
            want = 0
            if self._ack_wait_replicas:
                owner_lane = lanes if isinstance(lanes, RedisLane) else lanes.lane_for(call_keys[0])
                # Every attached replica up to ack_wait_replicas, also after a timeout: a push is never shown
                # before a replica holds it (commits alone wait for fewer once a replica stopped answering).
                want = min(self._ack_wait_replicas, await owner_lane.replicas(strict=True))
            args: list[str | int] = [
                payload, user_id, _PUSH_PREFIX, _PUSH_SUFFIX, self.user_channel(user_id) or "",
                "1" if key is not None else "", want,
            ]  # fmt: skip
            reply, lane = await lanes.evalsha_with_lane(PUSH, call_keys, args)
            if reply[0] == 0:
                return PushResult("no_session")
            if want:  # answered (stored or sent) and announced only once a replica has it (WAIT on its connection)
                acked = await lane.wait_replicated(want, self._ack_wait_timeout_ms, strict=True)
                if acked < want:
                    raise RegistryUnavailable(
                        f"push {reply[1]} to {user_id!r} reached {acked} of {want} replicas within "
                        f"{self._ack_wait_timeout_ms} ms: retry with the same key"
                    )
            if reply[5]:
                await lane.execute(b"SPUBLISH" if self.is_cluster else b"PUBLISH", reply[6], reply[5])
        except DOWN_ERRORS as exc:
            raise self._down(exc) from None
        self.available = True
        owner = as_text(reply[3]) if reply[3] else None
        return PushResult("sent" if owner else "stored", int(reply[1]), as_text(reply[2]), owner, bool(reply[4]))

    async def outbox_range(self, *, user_id: str, session_id: str, first_seq: int, last_seq: int) -> dict[int, str]:
        read = await self.read_outbox(user_id=user_id, session_id=session_id, first_seq=first_seq, last_seq=last_seq)
        return read.entries

    async def read_outbox(self, *, user_id: str, session_id: str, first_seq: int, last_seq: int) -> OutboxRead:
        wait = "1" if self._ack_wait_replicas else "0"
        args: list[str | int] = [session_id, first_seq, last_seq, wait]
        reply, lane = await self._run(OUTBOX_READ, [keys.session_key(user_id)], args)
        if not reply:
            return OutboxRead({}, None)
        entries = {int(reply[i]): as_text(reply[i + 1]) for i in range(1, len(reply) - 1, 2)}
        if entries and not await self._replicated(lane):
            raise NotYetReplicated(
                f"messages {min(entries)}-{max(entries)} of {user_id!r} are not confirmed on a replica within "
                f"{self._ack_wait_timeout_ms} ms: read them again later (they are kept, not lost)"
            )
        return OutboxRead(entries, int(reply[0]))

    async def _replicated(self, lane: RedisLane) -> bool:
        """Whether ``ack_wait_replicas`` replicas (at most the attached ones) hold every write ``lane``'s
        connection made so far (strict: also after an earlier timeout)."""
        if not self._ack_wait_replicas:
            return True
        try:
            want = min(self._ack_wait_replicas, await lane.replicas(strict=True))
            acked = await lane.wait_replicated(want, self._ack_wait_timeout_ms, strict=True)
        except DOWN_ERRORS as exc:
            raise self._down(exc) from None
        return acked >= want

    async def session_seqs(self, *, sessions: Sequence[tuple[str, str]]) -> list[int | None]:
        if not sessions:
            return []

        async def run() -> list[Any]:
            if self.is_cluster:
                return await asyncio.gather(
                    *(self._client.hmget(keys.session_key(u), ["sid", "lastServerSeq"]) for u, _ in sessions)
                )
            pipe = self._client.pipeline(transaction=False)
            for user_id, _ in sessions:
                pipe.hmget(keys.session_key(user_id), ["sid", "lastServerSeq"])
            return list(await pipe.execute())

        replies = await self._call(run)
        return [
            int(seq) if sid is not None and as_text(sid) == session_id and seq is not None else None
            for (_, session_id), (sid, seq) in zip(sessions, replies, strict=True)
        ]

    async def publish_topic(
        self, *, topic: str, payload: str, retention_count: int, retention_s: int, epoch_if_new: str
    ) -> Publication:
        call_keys = [keys.topic_meta_key(topic), keys.topic_log_key(topic)]
        await self._call(self._lanes)  # the mode decides the publish command
        args: list[str | int] = [
            payload, epoch_if_new, retention_count, retention_s * 1000, topic_meta_ttl_s(retention_s), topic,
            keys.topic_channel(topic), "SPUBLISH" if self.is_cluster else "PUBLISH",
        ]  # fmt: skip
        reply, _ = await self._run(PUBLISH_TOPIC, call_keys, args)
        return Publication(topic, int(reply[0]), as_text(reply[1]), payload)

    async def topic_positions(self, *, topics: Sequence[str]) -> list[TopicPosition]:
        if not topics:
            return []

        async def run() -> list[Any]:
            if self.is_cluster:
                return await asyncio.gather(
                    *(self._client.hmget(keys.topic_meta_key(t), ["epoch", "offset"]) for t in topics)
                )
            pipe = self._client.pipeline(transaction=False)
            for topic in topics:
                pipe.hmget(keys.topic_meta_key(topic), ["epoch", "offset"])
            return list(await pipe.execute())

        replies = await self._call(run)
        return [TopicPosition(int(o) if o is not None else 0, as_text(e) if e is not None else "") for e, o in replies]

    async def topic_since(self, *, topic: str, offset: int, epoch: str, limit: int) -> TopicHistory:
        call_keys = [keys.topic_meta_key(topic), keys.topic_log_key(topic)]
        reply, _ = await self._run(TOPIC_SINCE, call_keys, [offset, epoch, limit])
        position = TopicPosition(int(reply[1]), as_text(reply[0]))
        entries = [(int(reply[i]), as_text(reply[i + 1])) for i in range(2, len(reply) - 1, 2)]
        return history_after(position, offset, epoch, entries, topic)

    async def reconcile(
        self, server_id: str, records: Sequence[SessionRecord], *, routing_ttl_s: int, session_ttl_s: int
    ) -> list[str]:
        if not records:
            return []
        limits = DEFAULT_OUTBOX_LIMITS

        def call(r: SessionRecord) -> Awaitable[tuple[Any, RedisLane]]:
            return self._run(
                RECONCILE,
                [keys.user_key(r.user_id), keys.session_key(r.user_id)],
                [
                    server_id, routing_ttl_s, r.session_id, r.last_client_id, r.last_server_seq,
                    _subs_json(r.subscriptions), session_ttl_s, _outbox_json(r.outbox), limits.max_messages,
                    limits.max_bytes, r.synced_seq,
                ],
            )  # fmt: skip

        # All in flight at once: one write per node on the lanes.
        replies = [reply for reply, _ in await asyncio.gather(*(call(r) for r in records))]
        return [r.user_id for r, ok in zip(records, replies, strict=True) if not ok]

    async def heartbeat(self, server_id: str, body: str, ttl_s: int) -> None:
        async def write() -> None:
            await self._client.set(keys.heartbeat_key(server_id), body, ex=ttl_s)
            # The index lets readers find every heartbeat without scanning the keyspace. Its TTL only ever
            # grows (a 1 s "stopped" beat must not shorten it for the others): it outlives its last writer by
            # that writer's ttl_s at most.
            index = keys.heartbeat_index_key()
            pipe = self._client.pipeline(transaction=False)
            pipe.zadd(index, {server_id: int(time.time() * 1000)})
            pipe.expire(index, ttl_s, nx=True)
            pipe.expire(index, ttl_s, gt=True)
            await pipe.execute()

        await self._call(write)

    async def server_heartbeats(self) -> dict[str, str]:
        async def read() -> dict[str, str]:
            index = keys.heartbeat_index_key()
            ids = [as_text(m) for m in await self._client.zrange(index, 0, -1)]
            values = await asyncio.gather(*(self._client.get(keys.heartbeat_key(sid)) for sid in ids))
            gone = [sid for sid, v in zip(ids, values, strict=True) if v is None]
            if gone:
                await self._client.zrem(index, *gone)
            return {sid: as_text(v) for sid, v in zip(ids, values, strict=True) if v is not None}

        return await self._call(read)

    async def drain_notice(self, server_id: str) -> keys.DrainNotice | None:
        text = await self._call(lambda: self._client.get(keys.drain_key(server_id)))
        if text is None:
            return None
        try:
            return keys.DrainNotice.from_json(text)
        except ValueError:
            return None
