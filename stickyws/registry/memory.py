"""The registry for one server process (``stickyws serve`` without ``REDIS_URL``, tests): same contracts,
no persistence.

TTLs run on a monotonic clock; the session rules are those of :mod:`stickyws.registry.records`, the
bodies those of :mod:`stickyws.registry.wire`, so what the Redis scripts do is what happens here.

A commit runs on the server's own core (the Redis one runs in redis-server), so its cost is kept flat: a
stored session (:class:`_StoredSession`) keeps its outbox in a deque with the UTF-8 bytes counted as entries
come and go, as the Redis hash keeps ``outBytes``, so a commit neither copies nor recounts the outbox
(up to ``outbox_max_messages`` entries); and, as the Redis registry does, a commit answers with the
caller's mirror extended at the mirror's own limits, never with the stored outbox.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
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
    OutboxEntry,
    OutboxLimits,
    SessionRecord,
    apply_topic,
    extend_outbox,
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


def _utf8_len(text: str) -> int:
    """Bytes of ``text`` in UTF-8 (``isascii`` is a flag check: no encoding for ASCII text)."""
    return len(text) if text.isascii() else len(text.encode())


class _StoredSession:
    """A session as this registry holds it: the fields of its :class:`SessionRecord`, the outbox as a deque
    with its UTF-8 payload bytes, the limits it trims by, and when it expires (monotonic seconds).

    Its outbox follows the rule of :func:`stickyws.registry.records.extend_outbox` (append, then drop the
    oldest while over the limit's messages or bytes, the newest always staying) at a cost that does not grow
    with the outbox.
    """

    __slots__ = (
        "expiry", "last_client_id", "last_server_seq", "limits", "out_bytes", "out_first", "outbox", "route_key",
        "session_id", "subscriptions", "user_id",
    )  # fmt: skip

    def __init__(self, record: SessionRecord, limits: OutboxLimits, expiry: float) -> None:
        self.session_id = record.session_id
        self.user_id = record.user_id
        self.last_client_id = record.last_client_id
        self.last_server_seq = record.last_server_seq
        self.subscriptions = tuple(sorted(record.subscriptions))
        #: A deque from the first entry on (an empty deque takes 760 bytes: idle sessions hold none).
        self.outbox: deque[OutboxEntry] | tuple[OutboxEntry, ...] = deque(record.outbox) if record.outbox else ()
        self.out_bytes = sum(_utf8_len(p) for _, p in record.outbox)
        self.out_first = record.out_first
        self.limits = limits
        self.expiry = expiry
        #: The user's routing key (the commit refreshes its TTL).
        self.route_key = keys.user_key(record.user_id)

    def record(self, outbox: tuple[OutboxEntry, ...] | None = None) -> SessionRecord:
        """The stored state as a record, with ``outbox`` in place of the stored one when given."""
        return SessionRecord(
            self.session_id, self.user_id, self.last_client_id, self.last_server_seq, self.subscriptions,
            tuple(self.outbox) if outbox is None else outbox, self.out_first,
        )  # fmt: skip

    def append(self, first_seq: int, payloads: Sequence[str]) -> None:
        """Number ``payloads`` from ``first_seq``, append them and trim by :attr:`limits`."""
        outbox = self.outbox
        if type(outbox) is not deque:
            outbox = self.outbox = deque(outbox)
        size = self.out_bytes
        seq = first_seq
        for payload in payloads:
            outbox.append((seq, payload))
            size += _utf8_len(payload)
            seq += 1
        max_messages, max_bytes = self.limits.max_messages, self.limits.max_bytes
        while len(outbox) > max_messages or (size > max_bytes and len(outbox) > 1):
            size -= _utf8_len(outbox.popleft()[1])
        self.out_bytes = size
        self.last_server_seq = seq - 1


class InMemoryRegistry:
    """A :class:`~stickyws.registry.interfaces.Registry` for one server process (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.available = True
        self._clock = clock
        self._values: dict[str, tuple[str, float]] = {}
        self._sessions: dict[str, _StoredSession] = {}
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

    def _session(self, user_id: str) -> _StoredSession | None:
        stored = self._sessions.get(user_id)
        if stored is None or stored.expiry <= self._clock():
            self._sessions.pop(user_id, None)
            return None
        return stored

    def _store(self, record: SessionRecord, limits: OutboxLimits, ttl_s: float) -> _StoredSession:
        stored = self._sessions[record.user_id] = _StoredSession(record, limits, self._clock() + ttl_s)
        return stored

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
        resumed = existing is not None and existing.session_id == session_id
        if resumed and existing:
            stored = existing
            stored.expiry = self._clock() + session_ttl_s
        else:
            stored = self._store(SessionRecord(session_id, user_id), limits, session_ttl_s)
        after = replay_after if replay_after is not None else stored.last_server_seq
        shown = stored.record(tuple(e for e in stored.outbox if e[0] > after))
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
                stored.session_id == record.session_id and stored.last_client_id <= record.last_client_id
            ):
                self._store(record, stored.limits if stored else DEFAULT_OUTBOX_LIMITS, session_ttl_s)
            else:
                stored.expiry = self._clock() + session_ttl_s
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
        """See :meth:`stickyws.registry.interfaces.Sessions.commit`. Answers as the Redis registry does: the
        stored ids and subscriptions with ``record``'s outbox extended at the mirror's limits (the mirror keeps
        fewer messages than the session), and a session missing here is registered from ``record`` first (as
        the commit script does when the session's hash is gone)."""
        now = self._clock()
        user_id = record.user_id
        stored = self._sessions.get(user_id)
        if stored is None or stored.expiry <= now:
            stored = self._sessions[user_id] = _StoredSession(record, limits, 0.0)
        elif stored.session_id != record.session_id:
            raise SessionReplaced(record.session_id)
        stored.expiry = now + session_ttl_s
        stored.limits = limits
        first_seq = stored.last_server_seq + 1
        msg_id = commit.msg_id
        if msg_id <= stored.last_client_id:
            return CommitResult(True, first_seq, SessionRecord(
                stored.session_id, user_id, stored.last_client_id, stored.last_server_seq, stored.subscriptions,
                record.outbox, stored.out_first, record.outbox_chars, stored.last_server_seq,
            ))  # fmt: skip
        if commit.topic_op:
            subscriptions = set(stored.subscriptions)
            apply_topic(subscriptions, commit.topic_op, commit.topic)
            stored.subscriptions = tuple(sorted(subscriptions))
        stored.last_client_id = msg_id
        payloads = commit.payloads
        if payloads:
            stored.append(first_seq, payloads)
        last_seq = stored.last_server_seq
        stored.out_first = stored.outbox[0][0] if stored.outbox else last_seq + 1
        route = self._values.get(stored.route_key)
        if route is not None and route[0] == server_id and route[1] > now:
            self._values[stored.route_key] = (server_id, now + routing_ttl_s)
        outbox, chars = extend_outbox(record.outbox, first_seq, payloads, chars=record.outbox_chars)
        return CommitResult(False, first_seq, SessionRecord(
            stored.session_id, user_id, msg_id, last_seq, stored.subscriptions, outbox, stored.out_first, chars,
            last_seq,
        ))  # fmt: skip

    async def push(self, *, user_id: str, payload: str, key: str | None = None) -> PushResult:
        stored = self._session(user_id)
        if stored is None:
            return PushResult("no_session")
        session_id = stored.session_id
        key_name = keys.push_key(user_id, key) if key is not None else None
        used = self._get(key_name) if key_name is not None else None
        if used is not None:
            seq, duplicate = int(used), True
        else:
            seq, duplicate = stored.last_server_seq + 1, False
            stored.append(seq, (payload,))
            stored.out_first = stored.outbox[0][0] if stored.outbox else seq + 1
            if key_name is not None:
                self._set(key_name, str(seq), max(1.0, stored.expiry - self._clock()))
        owner = self._get(stored.route_key)
        if owner is None:
            return PushResult("stored", seq, session_id, duplicate=duplicate)
        push = UserPush(user_id, session_id, seq, payload, int(time.time() * 1000))
        await self.publish(keys.push_channel(owner), push_body(push))
        return PushResult("sent", seq, session_id, owner, duplicate=duplicate)

    async def outbox_range(self, *, user_id: str, session_id: str, first_seq: int, last_seq: int) -> dict[int, str]:
        read = await self.read_outbox(user_id=user_id, session_id=session_id, first_seq=first_seq, last_seq=last_seq)
        return read.entries

    async def read_outbox(self, *, user_id: str, session_id: str, first_seq: int, last_seq: int) -> OutboxRead:
        stored = self._session(user_id)  # one process, no replicas: everything it holds is confirmed
        if stored is None or stored.session_id != session_id:
            return OutboxRead({}, None)
        entries = {seq: text for seq, text in stored.outbox if first_seq <= seq <= last_seq}
        return OutboxRead(entries, stored.last_server_seq)

    async def session_seqs(self, *, sessions: Sequence[tuple[str, str]]) -> list[int | None]:
        out: list[int | None] = []
        for user_id, session_id in sessions:
            stored = self._session(user_id)
            out.append(stored.last_server_seq if stored and stored.session_id == session_id else None)
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
