"""The registry for one server process (``stickyws serve --dev``, tests): same contracts, no persistence.

TTLs run on a monotonic clock; the session rules are those of :mod:`stickyws.registry.records`, the
bodies those of :mod:`stickyws.registry.wire`, so what the Redis scripts do is what happens here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from stickyws import keys
from stickyws.registry.errors import SessionReplaced
from stickyws.registry.interfaces import (
    ClaimResult,
    EventCallback,
    OutboxRead,
    PushResult,
    SubscribedCallback,
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
    OutboxLimits,
    SessionRecord,
    append_push,
    apply_commit,
)
from stickyws.registry.wire import (
    Decoder,
    Publication,
    UserPush,
    decode,
    decoder_for,
    publication_body,
    push_body,
    server_decoders,
)


class InMemoryRegistry:
    """A :class:`~stickyws.registry.interfaces.Registry` for one server process (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.available = True
        self._clock = clock
        self._values: dict[str, tuple[str, float]] = {}
        #: user -> (record, limits, expiry)
        self._sessions: dict[str, tuple[SessionRecord, OutboxLimits, float]] = {}
        #: topic -> (epoch, last offset, [(offset, data, added_at)], expiry of the meta)
        self._topics: dict[str, tuple[str, int, list[tuple[int, str, float]], float]] = {}
        #: The channels listened to, each with the decoder of its bodies.
        self._channels: dict[str, Decoder] = {}
        self._listener: EventCallback | None = None

    def _get(self, key: str) -> str | None:
        item = self._values.get(key)
        if item is None or item[1] <= self._clock():
            self._values.pop(key, None)
            return None
        return item[0]

    def _set(self, key: str, value: str, ttl_s: float) -> None:
        self._values[key] = (value, self._clock() + ttl_s)

    def _session(self, user_id: str) -> tuple[SessionRecord, OutboxLimits] | None:
        item = self._sessions.get(user_id)
        if item is None or item[2] <= self._clock():
            self._sessions.pop(user_id, None)
            return None
        return item[0], item[1]

    def _store(self, record: SessionRecord, limits: OutboxLimits, ttl_s: float | None = None) -> None:
        expiry = self._sessions[record.user_id][2] if ttl_s is None else self._clock() + ttl_s
        self._sessions[record.user_id] = (record, limits, expiry)

    # ------------------------------------------------------------------ routes

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
        key = keys.user_key(user_id)
        previous = self._get(key)
        if (
            reject_live_owner
            and previous not in (None, server_id)
            and heartbeat_is_live(self._get(keys.heartbeat_key(str(previous))))
        ):
            return ClaimResult(False, previous)
        self._set(key, server_id, routing_ttl_s)
        existing = self._session(user_id) if resume else None
        resumed = existing is not None and existing[0].session_id == session_id
        if resumed and existing:
            record, limits = existing
        else:
            record = SessionRecord(session_id, user_id)
        self._store(record, limits, session_ttl_s)
        after = replay_after if replay_after is not None else record.last_server_seq
        shown = record._replace(outbox=tuple(e for e in record.outbox if e[0] > after))
        return ClaimResult(True, previous, shown, resumed)

    async def release(self, user_id: str, server_id: str) -> bool:
        key = keys.user_key(user_id)
        if self._get(key) == server_id:
            del self._values[key]
            return True
        return False

    async def owner(self, user_id: str) -> str | None:
        return self._get(keys.user_key(user_id))

    async def reconcile(
        self, server_id: str, records: Sequence[SessionRecord], *, routing_ttl_s: int, session_ttl_s: int
    ) -> list[str]:
        lost: list[str] = []
        for record in records:
            key = keys.user_key(record.user_id)
            owner = self._get(key)
            if owner not in (None, server_id):
                lost.append(record.user_id)
                continue
            self._set(key, server_id, routing_ttl_s)
            stored = self._session(record.user_id)
            if stored is None or (
                stored[0].session_id == record.session_id and stored[0].last_client_id <= record.last_client_id
            ):
                self._store(record, stored[1] if stored else DEFAULT_OUTBOX_LIMITS, session_ttl_s)
            else:
                self._store(stored[0], stored[1], session_ttl_s)
        return lost

    # ------------------------------------------------------------------ sessions

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
        stored = self._session(record.user_id)
        if stored is not None and stored[0].session_id != record.session_id:
            raise SessionReplaced(record.session_id)
        result = apply_commit(stored[0] if stored else record, commit, limits)
        self._store(result.record, limits, session_ttl_s)
        if not result.duplicate:
            route = keys.user_key(record.user_id)
            if self._get(route) == server_id:
                self._set(route, server_id, routing_ttl_s)
        return result

    async def push(self, *, user_id: str, payload: str, key: str | None = None) -> PushResult:
        stored = self._session(user_id)
        if stored is None:
            return PushResult("no_session")
        current, limits = stored
        key_name = keys.push_key(user_id, key) if key is not None else None
        used = self._get(key_name) if key_name is not None else None
        if used is not None:
            seq, duplicate = int(used), True
        else:
            seq, duplicate = current.last_server_seq + 1, False
            self._store(append_push(current, seq, payload, limits), limits)
            if key_name is not None:
                self._set(key_name, str(seq), max(1.0, self._sessions[user_id][2] - self._clock()))
        owner = self._get(keys.user_key(user_id))
        if owner is None:
            return PushResult("stored", seq, current.session_id, duplicate=duplicate)
        push = UserPush(user_id, current.session_id, seq, payload, int(time.time() * 1000))
        await self.publish(keys.push_channel(owner), push_body(push))
        return PushResult("sent", seq, current.session_id, owner, duplicate=duplicate)

    async def outbox_range(self, *, user_id: str, session_id: str, first_seq: int, last_seq: int) -> dict[int, str]:
        read = await self.read_outbox(user_id=user_id, session_id=session_id, first_seq=first_seq, last_seq=last_seq)
        return read.entries

    async def read_outbox(self, *, user_id: str, session_id: str, first_seq: int, last_seq: int) -> OutboxRead:
        stored = self._session(user_id)  # one process, no replicas: everything it holds is confirmed
        if stored is None or stored[0].session_id != session_id:
            return OutboxRead({}, None)
        record = stored[0]
        entries = {seq: text for seq, text in record.outbox if first_seq <= seq <= last_seq}
        return OutboxRead(entries, record.last_server_seq)

    async def session_seqs(self, *, sessions: Sequence[tuple[str, str]]) -> list[int | None]:
        out: list[int | None] = []
        for user_id, session_id in sessions:
            stored = self._session(user_id)
            out.append(stored[0].last_server_seq if stored and stored[0].session_id == session_id else None)
        return out

    # ------------------------------------------------------------------ topics

    def _topic(self, topic: str, retention_s: float | None = None) -> tuple[str, int, list[tuple[int, str, float]]]:
        now = self._clock()
        item = self._topics.get(topic)
        if item is None or item[3] <= now:
            self._topics.pop(topic, None)
            return "", 0, []
        epoch, offset, log, _ = item
        if retention_s is not None:
            log[:] = [e for e in log if e[2] > now - retention_s]
        return epoch, offset, log

    async def publish_topic(
        self, *, topic: str, payload: str, retention_count: int, retention_s: int, epoch_if_new: str
    ) -> Publication:
        epoch, offset, log = self._topic(topic, retention_s)
        epoch = epoch or epoch_if_new
        offset += 1
        log.append((offset, payload, self._clock()))
        del log[: max(0, len(log) - retention_count)]
        self._topics[topic] = (epoch, offset, log, self._clock() + max(retention_s, topic_meta_ttl_s(retention_s)))
        publication = Publication(topic, offset, epoch, payload, int(time.time() * 1000))
        await self.publish(keys.topic_channel(topic), publication_body(publication))
        return publication

    async def topic_positions(self, *, topics: Sequence[str]) -> list[TopicPosition]:
        out = []
        for topic in topics:
            epoch, offset, _ = self._topic(topic)
            out.append(TopicPosition(offset, epoch))
        return out

    async def topic_since(self, *, topic: str, offset: int, epoch: str, limit: int) -> TopicHistory:
        cur_epoch, cur, log = self._topic(topic)
        position = TopicPosition(cur, cur_epoch)
        entries = [(o, d) for o, d, _ in log if o > offset] if cur - offset <= limit else []
        return history_after(position, offset, epoch, entries, topic)

    # ------------------------------------------------------------------ liveness

    async def heartbeat(self, server_id: str, body: str, ttl_s: int) -> None:
        self._set(keys.heartbeat_key(server_id), body, ttl_s)

    async def server_heartbeats(self) -> dict[str, str]:
        found = {sid: self._get(k) for k in list(self._values) if (sid := keys.heartbeat_server_id(k)) is not None}
        return {sid: body for sid, body in found.items() if body is not None}

    async def drain_notice(self, server_id: str) -> keys.DrainNotice | None:
        text = self._get(keys.drain_key(server_id))
        if text is None:
            return None
        try:
            return keys.DrainNotice.from_json(text)
        except ValueError:
            return None

    async def store_drain_notice(self, notice: keys.DrainNotice) -> None:
        """Store and publish ``notice`` as the drain notifier does (for local use and tests)."""
        text = notice.to_json()
        self._set(keys.drain_key(notice.server_id), text, keys.DRAIN_NOTICE_TTL_S)
        await self.publish(keys.drain_key(notice.server_id), text)

    # ------------------------------------------------------------------ bus

    async def publish(self, channel: str, text: str) -> None:
        decoder = self._channels.get(channel)
        if self._listener is not None and decoder is not None:
            event = decode(decoder, channel, text)
            if event is not None:
                await self._listener(event)

    async def listen(self, server_id: str, on_event: EventCallback, on_subscribed: SubscribedCallback) -> None:
        self._channels.update(server_decoders(server_id))
        self._listener = on_event
        try:
            await on_subscribed()
            await asyncio.Event().wait()
        finally:
            self._listener = None

    def user_channel(self, user_id: str) -> str | None:
        return None

    async def subscribe(self, channels: Sequence[str]) -> None:
        for channel in channels:
            decoder = decoder_for(channel)
            if decoder is not None:
                self._channels[channel] = decoder

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        for channel in channels:
            self._channels.pop(channel, None)

    async def close(self) -> None:
        self._listener = None
        self._channels.clear()
