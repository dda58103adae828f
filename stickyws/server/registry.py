"""The connection registry interface and its in-memory implementation (one server, no Redis).

The registry holds three things (names from :mod:`stickyws.keys`): which server holds each user's
connection (``ws:user:{id}``, with the routing TTL), each resumable session (``ws:session:{id}``,
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
    * Every method raises :class:`RegistryUnavailable` when the backing store cannot be reached, and
      nothing else for that case; ``available`` reflects the last call.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from stickyws import keys
from stickyws.server.session import Commit, CommitResult, SessionRecord, append_outbox, apply_topic

#: Called with ``(channel, text)`` for each pub/sub message.
MessageCallback = Callable[[str, str], Awaitable[None]]
#: Called after every (re)subscription, so a notice published while unsubscribed is still seen.
SubscribedCallback = Callable[[], Awaitable[None]]


class RegistryUnavailable(Exception):
    """The registry (Redis) cannot be reached; callers apply ``registry_down_policy``."""


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
    ) -> ClaimResult:
        """Claim the user's route and open (or resume) the session, atomically."""
        ...

    async def release(self, user_id: str, server_id: str) -> bool:
        """Compare-and-delete the route; True when it was deleted."""
        ...

    async def owner(self, user_id: str) -> str | None:
        """The server that holds ``user_id``'s route now, if any."""
        ...

    async def commit(
        self, record: SessionRecord, commit: Commit, *, server_id: str, routing_ttl_s: int, session_ttl_s: int
    ) -> CommitResult:
        """Dedup and apply ``commit`` to the session atomically; refreshes both TTLs."""
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
        """Deliver messages on ``channels`` until cancelled; resubscribes after outages."""
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
        self._sessions: dict[str, tuple[SessionRecord, float]] = {}
        self._listeners: list[tuple[frozenset[str], MessageCallback]] = []

    def _get(self, key: str) -> str | None:
        item = self._values.get(key)
        if item is None or item[1] <= self._clock():
            self._values.pop(key, None)
            return None
        return item[0]

    def _set(self, key: str, value: str, ttl_s: float) -> None:
        self._values[key] = (value, self._clock() + ttl_s)

    def _session(self, session_id: str) -> SessionRecord | None:
        item = self._sessions.get(session_id)
        if item is None or item[1] <= self._clock():
            self._sessions.pop(session_id, None)
            return None
        return item[0]

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
        existing = self._session(session_id) if resume else None
        resumed = existing is not None and existing.user_id == user_id
        record = existing if resumed and existing else SessionRecord(session_id, user_id)
        self._sessions[session_id] = (record, self._clock() + session_ttl_s)
        return ClaimResult(True, previous, record, resumed)

    async def release(self, user_id: str, server_id: str) -> bool:
        key = keys.user_key(user_id)
        if self._get(key) == server_id:
            del self._values[key]
            return True
        return False

    async def owner(self, user_id: str) -> str | None:
        return self._get(keys.user_key(user_id))

    async def commit(
        self, record: SessionRecord, commit: Commit, *, server_id: str, routing_ttl_s: int, session_ttl_s: int
    ) -> CommitResult:
        current = self._session(record.session_id) or record
        if commit.msg_id <= current.last_client_id:
            return CommitResult(True, current.last_server_seq + 1, current)
        subs = set(current.subscriptions)
        apply_topic(subs, commit.topic_op, commit.topic)
        new = SessionRecord(
            current.session_id,
            current.user_id,
            commit.msg_id,
            current.last_server_seq + commit.outputs,
            tuple(sorted(subs)),
            append_outbox(current.outbox, current.last_server_seq + 1, commit.payloads),
        )
        self._sessions[record.session_id] = (new, self._clock() + session_ttl_s)
        route = keys.user_key(record.user_id)
        if self._get(route) == server_id:
            self._set(route, server_id, routing_ttl_s)
        return CommitResult(False, current.last_server_seq + 1, new)

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
            current = self._session(record.session_id)
            if current is None or current.last_client_id <= record.last_client_id:
                current = record
            self._sessions[record.session_id] = (current, self._clock() + session_ttl_s)
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
        for channels, callback in list(self._listeners):
            if channel in channels:
                await callback(channel, text)

    async def listen(
        self, channels: Sequence[str], on_message: MessageCallback, on_subscribed: SubscribedCallback
    ) -> None:
        entry = (frozenset(channels), on_message)
        self._listeners.append(entry)
        try:
            await on_subscribed()
            await asyncio.Event().wait()
        finally:
            self._listeners.remove(entry)

    async def close(self) -> None:
        self._listeners.clear()
