"""What a registry is: small Protocols by concern, the full :class:`Registry` that composes them, and
the results they answer with.

The registry holds (names from :mod:`stickyws.keys`) which server holds each user's connection
(``ws:{u:<user>}:route``, with the routing TTL), each resumable session (``ws:{u:<user>}:session``,
with the session TTL), each topic's log, and each server's heartbeat; its bus carries pushes,
publications, drain notices and takeover requests as typed events (:mod:`stickyws.registry.wire`).

==================  ===============================================================================
Protocol            methods
==================  ===============================================================================
:class:`Routes`     ``handshake``, ``release``, ``owner``, ``reconcile``
:class:`Sessions`   ``commit``, ``push``, ``outbox_range``, ``read_outbox``, ``session_seqs``
:class:`Topics`     ``publish_topic``, ``topic_positions``, ``topic_since``
:class:`Liveness`   ``available``, ``heartbeat``, ``drain_notice``
:class:`Bus`        ``listen``, ``subscribe``, ``unsubscribe``, ``publish``, ``user_channel``
:class:`Registry`   all of the above and ``close``
==================  ===============================================================================

Contracts every implementation keeps
    * :meth:`Routes.handshake` is ONE atomic step (one Redis round trip): read the user's owner;
      under the ``reject`` policy refuse when that owner is another server whose heartbeat is live
      and not ``draining``/``stopped``; otherwise set the owner to this server with the routing TTL, and open the
      session (resume it when it exists and belongs to the user, else create it).
    * :meth:`Routes.release` deletes the routing key only if this server still owns it.
    * :meth:`Sessions.commit` checks the message id against the session and applies the change in
      the same atomic step, so a message is never handled twice, even by two servers.
    * :meth:`Sessions.push` appends one message to the user's session outbox with the next ``seq`` in
      one atomic step, then tells the owning server (``keys.push_channel``). With
      ``ack_wait_replicas`` > 0 and a replica attached, the announcement (and the caller's answer) waits
      until a replica holds the message (``WAIT``); with no replica wait the script announces it in the
      same atomic step. Either way a server never shows a push a failover could lose.
    * :meth:`Topics.publish_topic` assigns the next offset of the topic's log (creating its epoch on
      first use), trims the log by count and age, and announces it on ``keys.topic_channel`` in the
      same atomic step: the channel carries publications in offset order.
    * Every method raises :class:`~stickyws.registry.errors.RegistryUnavailable` when the backing store
      cannot be reached, and nothing else for that case; ``available`` reflects the last call.

Handshake under ``reject``: the claim script refuses when another server owns the route and returns
that owner; the caller reads the owner's heartbeat (a second round trip only in that case) and, when
the owner is gone, claims again on condition that the route still names that owner.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from stickyws import keys
from stickyws.registry.records import DEFAULT_OUTBOX_LIMITS, Commit, CommitResult, OutboxLimits, SessionRecord
from stickyws.registry.wire import BusEvent, Publication

#: Called with each event of the bus (:meth:`Bus.listen`).
EventCallback = Callable[[BusEvent], Awaitable[None]]
#: Called after every (re)subscription, so a notice published while unsubscribed is still seen.
SubscribedCallback = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class OutboxRead:
    """What :meth:`Sessions.read_outbox` found: the kept messages of the asked range (seq -> payload JSON
    text), and ``last_seq``, the session's ``lastServerSeq`` (``None``: the session is another one, or
    gone). A seq at or below ``last_seq`` that is not in ``entries`` is gone (trimmed); one above it is
    not numbered yet (a push still on its way, or lost in a failover before any replica held it)."""

    entries: dict[int, str]
    last_seq: int | None


@dataclass(frozen=True)
class ClaimResult:
    """Outcome of :meth:`Routes.handshake`.

    ``claimed`` False means a live other server holds the user (409 under ``reject``); then
    ``session`` is ``None``. ``previous`` is the owner before the claim (``None``: nobody).
    """

    claimed: bool
    previous: str | None
    session: SessionRecord | None = None
    resumed: bool = False
    #: False when the replayed outbox (``replay_after``) could not be confirmed on ``ack_wait_replicas``
    #: replicas: the caller must not show it yet, but read it again (:meth:`Sessions.read_outbox`).
    replay_confirmed: bool = True


@dataclass(frozen=True)
class PushResult:
    """Outcome of :meth:`Sessions.push`.

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
class TopicHistory:
    """What :meth:`Topics.topic_since` found: the topic's position now, and the publications after
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


def topic_meta_ttl_s(retention_s: int) -> int:
    """How long a topic's epoch and offset outlive its last publication: a day at least, so a topic
    that is quiet for a while keeps its epoch (its clients can still tell they missed nothing)."""
    return max(86_400, 2 * retention_s)


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


class Routes(Protocol):
    """Which server holds each user, claimed together with the user's session."""

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

    async def reconcile(
        self, server_id: str, records: Sequence[SessionRecord], *, routing_ttl_s: int, session_ttl_s: int
    ) -> list[str]:
        """Re-register each record's route and session; returns users now owned by another server."""
        ...


class Sessions(Protocol):
    """Resumable sessions: commits of client messages, pushes to users, catch-up reads."""

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

        Raises :class:`~stickyws.registry.errors.SessionReplaced` when the user's session is another one now.
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
        catch-up read must survive a failover). Raises :class:`~stickyws.registry.errors.NotYetReplicated`
        when that is not confirmed within ``ack_wait_timeout_ms``."""
        ...

    async def session_seqs(self, *, sessions: Sequence[tuple[str, str]]) -> list[int | None]:
        """``lastServerSeq`` of each ``(user_id, session_id)``; ``None`` where the session is another one."""
        ...


class Topics(Protocol):
    """Topic logs: numbered, bounded, each with an epoch."""

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


class Liveness(Protocol):
    """Servers' heartbeats and stored drain notices, and whether the registry answers."""

    #: Whether the last call reached the registry.
    available: bool

    async def heartbeat(self, server_id: str, body: str, ttl_s: int) -> None:
        """Write the server's heartbeat JSON with its TTL."""
        ...

    async def drain_notice(self, server_id: str) -> keys.DrainNotice | None:
        """The stored drain notice for ``server_id``, if any (malformed ones are ignored)."""
        ...

    async def server_heartbeats(self) -> dict[str, str]:
        """Every stored heartbeat value, by server id (those whose TTL has not run out)."""
        ...


class Bus(Protocol):
    """Pub/sub between servers and backends, delivered as typed events (:mod:`stickyws.registry.wire`)."""

    async def listen(self, server_id: str, on_event: EventCallback, on_subscribed: SubscribedCallback) -> None:
        """Hand every event for ``server_id`` (its drain notices, takeover requests and pushes, and the
        channels added by :meth:`subscribe`) to ``on_event`` until cancelled; resubscribes to all of them
        after outages, then calls ``on_subscribed``. A body that is not its channel's event is logged and
        dropped."""
        ...

    def user_channel(self, user_id: str) -> str | None:
        """A channel the server holding ``user_id`` must add for that user's pushes (a sharded channel
        on a cluster), or ``None`` when pushes arrive on the server's own channel."""
        ...

    async def subscribe(self, channels: Sequence[str]) -> None:
        """Add ``channels`` (users' push channels, topic channels) to the running :meth:`listen`; returns
        once Redis confirmed them (or they will be subscribed when the listener reconnects)."""
        ...

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        """Remove ``channels`` from the running :meth:`listen`."""
        ...

    async def publish(self, channel: str, text: str) -> None:
        """Publish ``text`` on ``channel``."""
        ...


class Registry(Routes, Sessions, Topics, Liveness, Bus, Protocol):
    """What the server core needs from a registry (see the module docstring for the contracts)."""

    async def close(self) -> None:
        """Release connections (idempotent)."""
        ...
