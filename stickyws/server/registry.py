"""The connection registry interface and its in-memory implementation (one server, no Redis).

The registry holds three things (names from :mod:`stickyws.keys`): which server holds each user's
connection (``ws:{u:<user>}:route``, with the routing TTL), each resumable session (``ws:{u:<user>}:session``,
with the session TTL), and each server's heartbeat. It also carries pub/sub for drain notices,
take-over requests and reconnect announcements.

Contracts every implementation keeps
    * :meth:`Registry.handshake` is ONE atomic step (one Redis round trip): read the user's owner;
      under the ``reject`` policy refuse when that owner is another server whose heartbeat is live
      and not ``draining``/``stopped``; otherwise set the owner to this server with the routing TTL, and open the
      session (resume it when it exists and belongs to the user, else create it).
    * :meth:`Registry.release` deletes the routing key only if this server still owns it.
    * :meth:`Registry.commit` checks the message id against the session and applies the change in
      the same atomic step, so a message is never handled twice, even by two servers.
    * :meth:`Registry.push` appends one message to the user's session outbox with the next ``seq`` in
      one atomic step, then tells the owning server (``keys.push_channel``). With
      ``ack_wait_replicas`` > 0 and a replica attached, the announcement (and the caller's answer) waits
      until a replica holds the message (``WAIT``); with no replica wait the script announces it in the
      same atomic step. Either way a server never shows a push a failover could lose.
    * :meth:`Registry.publish_topic` assigns the next offset of the topic's log (creating its epoch on
      first use), trims the log by count and age, and announces it on ``keys.topic_channel`` in the
      same atomic step: the channel carries publications in offset order.
    * Every method raises :class:`RegistryUnavailable` when the backing store cannot be reached, and
      nothing else for that case; ``available`` reflects the last call.

Handshake under ``reject``: the claim script refuses when another server owns the route and returns
that owner; the caller reads the owner's heartbeat (a second round trip only in that case) and, when
the owner is gone, claims again on condition that the route still names that owner.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from stickyws import json_codec, keys
from stickyws.server.session import (
    DEFAULT_OUTBOX_LIMITS,
    Commit,
    CommitResult,
    OutboxLimits,
    SessionRecord,
    append_outbox,
    apply_topic,
)

#: Called with ``(channel, text)`` for each pub/sub message.
MessageCallback = Callable[[str, str], Awaitable[None]]
#: Called after every (re)subscription, so a notice published while unsubscribed is still seen.
SubscribedCallback = Callable[[], Awaitable[None]]


class RegistryUnavailable(Exception):
    """The registry (Redis) cannot be reached; callers apply ``registry_down_policy``."""


class NotYetReplicated(RegistryUnavailable):
    """A catch-up read found messages that no replica is known to hold yet (``ack_wait_replicas`` did not
    confirm within ``ack_wait_timeout_ms``): nothing is lost, nothing may be shown yet; read again later.

    A subclass of :class:`RegistryUnavailable`, so a caller that does not know it treats the read as an
    outage (never as a loss)."""


@dataclass(frozen=True)
class OutboxRead:
    """What :meth:`Registry.read_outbox` found: the kept messages of the asked range (seq -> payload JSON
    text), and ``last_seq``, the session's ``lastServerSeq`` (``None``: the session is another one, or
    gone). A seq at or below ``last_seq`` that is not in ``entries`` is gone (trimmed); one above it is
    not numbered yet (a push still on its way, or lost in a failover before any replica held it)."""

    entries: dict[int, str]
    last_seq: int | None


@dataclass(frozen=True)
class ClaimResult:
    """Outcome of :meth:`Registry.handshake`.

    ``claimed`` False means a live other server holds the user (409 under ``reject``); then
    ``session`` is ``None``. ``previous`` is the owner before the claim (``None``: nobody).
    """

    claimed: bool
    previous: str | None
    session: SessionRecord | None = None
    resumed: bool = False
    #: False when the replayed outbox (``replay_after``) could not be confirmed on ``ack_wait_replicas``
    #: replicas: the caller must not show it yet, but read it again (:meth:`Registry.read_outbox`).
    replay_confirmed: bool = True


class SessionReplaced(Exception):
    """The user's session in the registry is no longer this connection's (a newer connection took over)."""


@dataclass(frozen=True)
class PushResult:
    """Outcome of :meth:`Registry.push`.

    ``status``: ``"sent"`` (the user has a route: its server was told), ``"stored"`` (no route: kept
    in the session for the client's resume) or ``"no_session"`` (unknown user or expired session:
    nothing stored). ``seq`` is the message's seq in session ``session_id``.
    """

    status: str
    seq: int | None = None
    session_id: str | None = None
    server_id: str | None = None
    #: True when the push's idempotency key had been used: nothing new was stored.
    duplicate: bool = False

    def as_dict(self) -> dict[str, object]:
        """JSON-ready view (what the CLI and the HTTP endpoint answer)."""
        out: dict[str, object] = {
            "status": self.status, "seq": self.seq, "sessionId": self.session_id, "serverId": self.server_id
        }  # fmt: skip
        if self.duplicate:
            out["duplicate"] = True
        return out


@dataclass(frozen=True)
class TopicPosition:
    """Where a topic's log stands: the last assigned ``offset`` (0: none yet) in ``epoch`` ("": no log)."""

    offset: int
    epoch: str

    def as_dict(self) -> dict[str, object]:
        """JSON-ready view."""
        return {"offset": self.offset, "epoch": self.epoch}


@dataclass(frozen=True)
class Publication:
    """One publication of a topic: ``data`` is its payload's compact JSON text."""

    topic: str
    offset: int
    epoch: str
    data: str
    #: Epoch milliseconds when the registry assigned it (0: unknown), for the publish-to-send lag.
    ts_ms: int = 0


@dataclass(frozen=True)
class TopicHistory:
    """What :meth:`Registry.topic_since` found: the topic's position now, and the publications after
    the asked position, or ``None`` when they cannot all be given (retention, epoch change)."""

    position: TopicPosition
    publications: tuple[Publication, ...] | None


def history_after(
    position: TopicPosition, offset: int, epoch: str, entries: Sequence[tuple[int, str]], topic: str
) -> TopicHistory:
    """Judge ``entries`` (``(offset, data)`` in offset order) read after ``(offset, epoch)``.

    Recoverable when the epoch matches (or the client held no epoch at offset 0, i.e. it subscribed
    before the log existed) and ``entries`` are exactly ``offset+1 .. position.offset``.
    """
    if position.offset == offset and (epoch == position.epoch or offset == 0):
        return TopicHistory(position, ())
    same_epoch = epoch == position.epoch or (offset == 0 and epoch == "")
    wanted = list(range(offset + 1, position.offset + 1))
    if not same_epoch or [o for o, _ in entries] != wanted:
        return TopicHistory(position, None)
    return TopicHistory(position, tuple(Publication(topic, o, position.epoch, d) for o, d in entries))


class Registry(Protocol):
    """What the server core needs from a registry (see the module docstring for the contracts)."""

    available: bool

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
        """Claim the user's route and open (or resume) the session, atomically.

        The returned record's outbox holds the kept messages with a seq above ``replay_after``
        (none when ``None``); ``limits`` are stored with a new session (pushes trim by them).
        """
        ...

    async def release(self, user_id: str, server_id: str) -> bool:
        """Compare-and-delete the route; True when it was deleted."""
        ...

    async def owner(self, user_id: str) -> str | None:
        """The server that holds ``user_id``'s route now, if any."""
        ...

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
        """Dedup and apply ``commit`` to the session atomically; refreshes both TTLs.

        Raises :class:`SessionReplaced` when the user's session is another one now.
        """
        ...

    async def push(self, *, user_id: str, payload: str, key: str | None = None) -> PushResult:
        """Append ``payload`` (JSON text) to the user's session with the next seq and tell its server.

        ``key``: an idempotency key. A push with a key already used for this user (within the session
        TTL) appends nothing and returns the seq that key got (``duplicate``), announcing it again; so
        a backend that retries after an error with the same key delivers the message once."""
        ...

    async def outbox_range(self, *, user_id: str, session_id: str, first_seq: int, last_seq: int) -> dict[int, str]:
        """The kept messages ``first_seq..last_seq`` of the session (:meth:`read_outbox`'s ``entries``)."""
        ...

    async def read_outbox(self, *, user_id: str, session_id: str, first_seq: int, last_seq: int) -> OutboxRead:
        """The kept messages ``first_seq..last_seq`` of the session and its ``lastServerSeq``, read from the
        primary and returned only once ``ack_wait_replicas`` replicas hold them (what a client is shown of a
        catch-up read must survive a failover). Raises :class:`NotYetReplicated` when that is not confirmed
        within ``ack_wait_timeout_ms``."""
        ...

    async def session_seqs(self, *, sessions: Sequence[tuple[str, str]]) -> list[int | None]:
        """``lastServerSeq`` of each ``(user_id, session_id)``; ``None`` where the session is another one."""
        ...

    async def publish_topic(
        self, *, topic: str, payload: str, retention_count: int, retention_s: int, epoch_if_new: str
    ) -> Publication:
        """Assign the next offset of ``topic`` to ``payload`` (JSON text), keep it, announce it."""
        ...

    async def topic_positions(self, *, topics: Sequence[str]) -> list[TopicPosition]:
        """The current position of each topic."""
        ...

    async def topic_since(self, *, topic: str, offset: int, epoch: str, limit: int) -> TopicHistory:
        """The publications of ``topic`` after ``(offset, epoch)``, at most ``limit`` of them."""
        ...

    async def reconcile(
        self, server_id: str, records: Sequence[SessionRecord], *, routing_ttl_s: int, session_ttl_s: int
    ) -> list[str]:
        """Re-register each record's route and session; returns users now owned by another server."""
        ...

    async def heartbeat(self, server_id: str, body: str, ttl_s: int) -> None:
        """Write the server's heartbeat JSON with its TTL."""
        ...

    async def drain_notice(self, server_id: str) -> keys.DrainNotice | None:
        """The stored drain notice for ``server_id``, if any (malformed ones are ignored)."""
        ...

    async def publish(self, channel: str, text: str) -> None:
        """Publish ``text`` on ``channel``."""
        ...

    async def listen(
        self, channels: Sequence[str], on_message: MessageCallback, on_subscribed: SubscribedCallback
    ) -> None:
        """Deliver messages on ``channels`` (and those added by :meth:`subscribe`) until cancelled;
        resubscribes to all of them after outages, then calls ``on_subscribed``."""
        ...

    def user_channel(self, user_id: str) -> str | None:
        """A channel the server holding ``user_id`` must add for that user's pushes (a sharded channel
        on a cluster), or ``None`` when pushes arrive on the server's own channel."""
        ...

    async def subscribe(self, channels: Sequence[str]) -> None:
        """Add ``channels`` to the running :meth:`listen`; returns once Redis confirmed them (or they
        will be subscribed when the listener reconnects)."""
        ...

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        """Remove ``channels`` from the running :meth:`listen`."""
        ...

    async def close(self) -> None:
        """Release connections (idempotent)."""
        ...


#: Heartbeat statuses of a server that is going away: its users may be claimed even under ``reject``.
GONE_STATUSES = ("draining", "stopped")


def heartbeat_is_live(body: str | None) -> bool:
    """Whether a heartbeat value names a server that still serves (present, not draining or stopped).

    An unreadable heartbeat counts as live (the safe answer under ``reject``).
    """
    if body is None:
        return False
    try:
        return json.loads(body).get("status") not in GONE_STATUSES
    except (ValueError, AttributeError):
        return True


class InMemoryRegistry:
    """A registry for one server process: same contracts, no persistence, TTLs on a monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.available = True
        self._clock = clock
        self._values: dict[str, tuple[str, float]] = {}
        #: user -> (record, limits, expiry)
        self._sessions: dict[str, tuple[SessionRecord, OutboxLimits, float]] = {}
        #: topic -> (epoch, last offset, [(offset, data, added_at)], expiry of the meta)
        self._topics: dict[str, tuple[str, int, list[tuple[int, str, float]], float]] = {}
        self._channels: set[str] = set()
        self._listener: MessageCallback | None = None

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
        current = stored[0] if stored else record
        if commit.msg_id <= current.last_client_id:
            self._store(current, limits, session_ttl_s)
            return CommitResult(True, current.last_server_seq + 1, current)
        subs = set(current.subscriptions)
        apply_topic(subs, commit.topic_op, commit.topic)
        outbox = append_outbox(
            current.outbox, current.last_server_seq + 1, commit.payloads, limit=limits.max_messages,
            max_bytes=limits.max_bytes,
        )  # fmt: skip
        new = SessionRecord(
            current.session_id,
            current.user_id,
            commit.msg_id,
            current.last_server_seq + commit.outputs,
            tuple(sorted(subs)),
            outbox,
            outbox[0][0] if outbox else current.last_server_seq + commit.outputs + 1,
        )
        self._store(new, limits, session_ttl_s)
        route = keys.user_key(record.user_id)
        if self._get(route) == server_id:
            self._set(route, server_id, routing_ttl_s)
        return CommitResult(False, current.last_server_seq + 1, new)

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
            outbox = append_outbox(
                current.outbox, seq, (payload,), limit=limits.max_messages, max_bytes=limits.max_bytes
            )
            self._store(current._replace(last_server_seq=seq, outbox=outbox, out_first=outbox[0][0]), limits)
            if key_name is not None:
                self._set(key_name, str(seq), max(1.0, self._sessions[user_id][2] - self._clock()))
        owner = self._get(keys.user_key(user_id))
        if owner is None:
            return PushResult("stored", seq, current.session_id, duplicate=duplicate)
        now_ms = int(time.time() * 1000)
        body = json.dumps({"u": user_id, "s": current.session_id, "q": seq, "ts": now_ms}, separators=(",", ":"))
        await self.publish(keys.push_channel(owner), body[:-1] + ',"d":' + payload + "}")
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

    async def heartbeat(self, server_id: str, body: str, ttl_s: int) -> None:
        self._set(keys.heartbeat_key(server_id), body, ttl_s)

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

    async def publish(self, channel: str, text: str) -> None:
        if self._listener is not None and channel in self._channels:
            await self._listener(channel, text)

    async def listen(
        self, channels: Sequence[str], on_message: MessageCallback, on_subscribed: SubscribedCallback
    ) -> None:
        self._channels.update(channels)
        self._listener = on_message
        try:
            await on_subscribed()
            await asyncio.Event().wait()
        finally:
            self._listener = None

    def user_channel(self, user_id: str) -> str | None:
        return None

    async def subscribe(self, channels: Sequence[str]) -> None:
        self._channels.update(channels)

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        self._channels.difference_update(channels)

    async def close(self) -> None:
        self._listener = None
        self._channels.clear()


def topic_meta_ttl_s(retention_s: int) -> int:
    """How long a topic's epoch and offset outlive its last publication: a day at least, so a topic
    that is quiet for a while keeps its epoch (its clients can still tell they missed nothing)."""
    return max(86_400, 2 * retention_s)


def publication_body(publication: Publication) -> str:
    """The pub/sub body announcing ``publication`` on its topic channel (data last, as raw JSON)."""
    head = json.dumps(
        {"t": publication.topic, "o": publication.offset, "e": publication.epoch, "ts": publication.ts_ms},
        separators=(",", ":"),
    )
    return head[:-1] + ',"d":' + publication.data + "}"


def _split_body(text: str) -> tuple[dict[str, Any], str]:
    """A pub/sub body's head fields and its ``d`` payload text, without parsing the payload.

    Bodies put ``"d"`` last (:func:`publication_body`, the registry's scripts), and a ``,"d":`` inside a
    head string would have its quote escaped, so the first one starts the payload.
    """
    cut = text.find(',"d":')
    if cut < 0 or not text.endswith("}"):
        raise ValueError("not a stickyws pub/sub body")
    head = json_codec.loads(text[:cut] + "}")
    data = text[cut + 5 : -1]
    if not isinstance(head, dict) or not data:
        raise ValueError("not a stickyws pub/sub body")
    return head, data


def parse_publication(text: str) -> Publication:
    """A topic channel body as a :class:`Publication`; raises ``ValueError`` for anything else."""
    try:
        head, data = _split_body(text)
        return Publication(str(head["t"]), int(head["o"]), str(head["e"]), data, int(head.get("ts", 0)))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed publication: {exc}") from None


@dataclass(frozen=True)
class UserPush:
    """A push channel body: message ``seq`` of ``user_id``'s session ``session_id``; ``data`` is JSON text."""

    user_id: str
    session_id: str
    seq: int
    data: str
    ts_ms: int = 0


def parse_push(text: str) -> UserPush:
    """A push channel body as a :class:`UserPush`; raises ``ValueError`` for anything else."""
    try:
        head, data = _split_body(text)
        return UserPush(str(head["u"]), str(head["s"]), int(head["q"]), data, int(head.get("ts", 0)))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed push: {exc}") from None
