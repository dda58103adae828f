"""The registry's bus on Redis: pub/sub delivered as typed events (:mod:`stickyws.registry.wire`).

Contracts are those of :class:`~stickyws.registry.interfaces.Bus`. Each channel is held with the
decoder of its bodies, chosen when it is added (:func:`~stickyws.registry.wire.server_decoders`,
:func:`~stickyws.registry.wire.decoder_for`); a message costs one lookup of its channel, and a channel
of no known kind is never subscribed. On one primary the channels share one connection
(:class:`~stickyws.registry.redis_listener.RedisSubscriber`); on a cluster the server channels sit on
any node and the users' and topics' channels are sharded (:class:`~stickyws.registry.redis_listener.ClusterListener`).

:class:`RedisBus` extends :class:`~stickyws.registry.redis_store.RedisStore` (one line of inheritance: the
compiled build's classes have a single base) and shares its connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from redis.asyncio.connection import parse_url
from redis.credentials import CredentialProvider

from stickyws.registry.errors import RegistryUnavailable
from stickyws.registry.interfaces import EventCallback, SubscribedCallback
from stickyws.registry.redis_connection import (
    ACK_WAIT_REPLICAS,
    ACK_WAIT_TIMEOUT_MS,
    CONNECT_TIMEOUT_S,
    DOWN_ERRORS,
    KEEPALIVE_OPTIONS,
    POOL_SIZE,
    SOCKET_TIMEOUT_S,
    reraise_if_cancelling,
)
from stickyws.registry.redis_listener import ClusterListener, RedisSubscriber
from stickyws.registry.redis_store import RedisStore
from stickyws.registry.wire import Decoder, decoder_for, server_decoders

log = logging.getLogger("stickyws.server")

#: Pause between pub/sub resubscription attempts while Redis is down.
RESUBSCRIBE_BACKOFF_S = 0.2
#: How long :meth:`RedisBus.subscribe` waits for Redis to confirm a new channel.
SUBSCRIBE_CONFIRM_TIMEOUT_S = 2.0


def _known(channels: Sequence[str]) -> dict[str, Decoder]:
    """``channels`` of a known kind, each with its decoder."""
    return {c: d for c in channels if (d := decoder_for(c)) is not None}


class RedisBus(RedisStore):
    """Pub/sub on Redis, one primary or a cluster, beside the store's scripts (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = POOL_SIZE,
        credential_provider: CredentialProvider | None = None,
        cluster: bool | None = None,
        ack_wait_replicas: int = ACK_WAIT_REPLICAS,
        ack_wait_timeout_ms: int = ACK_WAIT_TIMEOUT_MS,
    ) -> None:
        # The options spelled out (not ``**options: Unpack[...]``, which the compiled build mis-passes).
        super().__init__(
            url,
            pool_size=pool_size,
            credential_provider=credential_provider,
            cluster=cluster,
            ack_wait_replicas=ack_wait_replicas,
            ack_wait_timeout_ms=ack_wait_timeout_ms,
        )
        #: The channels the listener holds, each with its decoder; its connection on one primary, or the
        #: cluster's listener.
        self._channels: dict[str, Decoder] = {}
        self._subscriber: RedisSubscriber | None = None
        self._listener: ClusterListener | None = None

    async def publish(self, channel: str, text: str) -> None:
        await self._call(lambda: self._client.publish(channel, text))

    async def listen(self, server_id: str, on_event: EventCallback, on_subscribed: SubscribedCallback) -> None:
        self._channels.update(server_decoders(server_id))
        while self.lane is None:
            try:
                await self._call(self._lanes)  # learn the mode first
            except RegistryUnavailable:
                await asyncio.sleep(RESUBSCRIBE_BACKOFF_S)
        if self.is_cluster:
            await self._listen_cluster(on_event, on_subscribed)
            return
        while True:
            subscriber = RedisSubscriber(
                self._url,
                credential_provider=self._credential_provider,
                connect_timeout_s=CONNECT_TIMEOUT_S,
                reply_timeout_s=SOCKET_TIMEOUT_S,
                keepalive_options=KEEPALIVE_OPTIONS,
            )
            try:
                await self._hold(subscriber, on_event, on_subscribed)
            except (*DOWN_ERRORS, RegistryUnavailable):
                reraise_if_cancelling()
                self.available = False
                self._subscriber = None
                await self._close_subscriber(subscriber)
                await asyncio.sleep(RESUBSCRIBE_BACKOFF_S)
            except BaseException as exc:  # cancelled: close the connection, then go on ending
                # Not a ``finally`` with an await: the compiled build loses the exception across it.
                await self._close_subscriber(subscriber)
                raise exc

    async def _close_subscriber(self, subscriber: RedisSubscriber) -> None:
        self._subscriber = None
        await subscriber.close()

    async def _hold(
        self, subscriber: RedisSubscriber, on_event: EventCallback, on_subscribed: SubscribedCallback
    ) -> None:
        """Open ``subscriber``, subscribe the wanted channels and hand every message on, until it fails."""
        channels = self._channels
        await subscriber.open()
        wanted = sorted(channels)
        await subscriber.subscribe(wanted, SUBSCRIBE_CONFIRM_TIMEOUT_S)
        self._subscriber = subscriber
        missed = channels.keys() - wanted  # asked for while the subscribe was on its way
        if missed:
            await subscriber.subscribe(sorted(missed), SUBSCRIBE_CONFIRM_TIMEOUT_S)
        self.available = True
        await on_subscribed()
        while True:
            # No read timeout (it cost a timer per message); a peer that went silent is found by
            # TCP keepalive (KEEPALIVE_OPTIONS), a closed one at once.
            for channel, data in await subscriber.messages():
                name = channel.decode()
                decoder = channels.get(name)
                if decoder is None:
                    continue  # unsubscribed meanwhile
                try:
                    event = decoder(data.decode())
                except ValueError:
                    log.warning("ignored a malformed message on %s", name)
                    continue
                await on_event(event)

    async def _listen_cluster(self, on_event: EventCallback, on_subscribed: SubscribedCallback) -> None:
        kwargs = {k: v for k, v in parse_url(self._url).items() if k not in ("host", "port", "db")}
        if self._credential_provider is not None:
            kwargs["credential_provider"] = self._credential_provider
        listener = ClusterListener(self._client, kwargs, on_event, CONNECT_TIMEOUT_S)
        listener.wanted.update(self._channels)
        self._listener = listener

        async def subscribed() -> None:
            self.available = True
            await on_subscribed()

        try:
            await listener.run(subscribed, RESUBSCRIBE_BACKOFF_S)
        finally:
            self._listener = None

    async def subscribe(self, channels: Sequence[str]) -> None:
        known: Mapping[str, Decoder] = _known(channels)
        if self._listener is not None:
            self._channels.update(known)
            await self._listener.subscribe(known, SUBSCRIBE_CONFIRM_TIMEOUT_S)
            return
        new = [c for c in known if c not in self._channels]
        self._channels.update(known)
        subscriber = self._subscriber
        if new and subscriber is not None:  # else the listener subscribes to the whole set when it (re)connects
            await subscriber.subscribe(new, SUBSCRIBE_CONFIRM_TIMEOUT_S)

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        if self._listener is not None:
            for channel in channels:
                self._channels.pop(channel, None)
            await self._listener.unsubscribe(channels)
            return
        gone = [c for c in channels if self._channels.pop(c, None) is not None]
        if gone and self._subscriber is not None:
            self._subscriber.unsubscribe(gone)
