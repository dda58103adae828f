"""The registry's pub/sub readers: one connection on one primary, or plain and sharded channels on a cluster.

:class:`RedisSubscriber` (one primary) holds the channels on one connection of its own, read by hiredis as
the lanes' replies are. :class:`ClusterListener` (a Redis Cluster) holds the plain channels on any one
node and the sharded ones on their slot's primary. Neither decodes more than a channel's decoder
(:mod:`stickyws.registry.wire`); :mod:`stickyws.registry.redis_bus` drives them.

On a cluster, a plain ``PUBLISH`` is forwarded to every node, so the low-volume server channels (drain
notice, takeover) are subscribed with ``SUBSCRIBE`` on any one node. The high-volume ones (a user's
messages ``ws:{u:<user>}:push``, a topic's publications ``ws:{t:<topic>}:pub``) are sharded: the
registry's scripts publish them with ``SPUBLISH`` in the slot of the keys they write, and the listener
holds ``SSUBSCRIBE`` on the primary that owns that slot, one connection per node.

Failover or resharding: any reader that fails (the node died, or Redis sent ``sunsubscribe`` for a
channel whose slot moved) ends the round; the listener closes every node connection, refreshes the
cluster's slot map, subscribes everything again and calls ``on_subscribed``, whose caller reads back
whatever was published meanwhile (the registry keeps it). Nothing relies on a message not being lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from stickyws.keys import is_sharded_channel
from stickyws.registry.errors import LaneUnavailable
from stickyws.registry.interfaces import EventCallback
from stickyws.registry.redis_connection import DOWN_ERRORS, as_text
from stickyws.registry.redis_lane import RedisLane, pack_command
from stickyws.registry.wire import Decoder

log = logging.getLogger("stickyws.server")


class RedisSubscriber(RedisLane):
    """Pub/sub on one connection of its own (one primary), read by hiredis as the lane's replies are.

    :meth:`open` connects (and authenticates); :meth:`subscribe` returns once Redis confirmed every
    channel (or after ``timeout_s``); :meth:`messages` returns the ``(channel, data)`` received so far,
    in order, waiting for at least one, and raises :class:`LaneUnavailable` once the connection is gone
    and everything read before that was handed out. It never reconnects: the caller opens a new one
    and subscribes again. Past ``max_buffered`` messages not yet handed out it stops reading the
    socket (Redis then buffers, up to its pub/sub output limit) until :meth:`messages` catches up.
    """

    def __init__(
        self,
        url: str,
        *,
        max_buffered: int = 10_000,
        credential_provider: Any = None,
        connect_timeout_s: float = 1.0,
        reply_timeout_s: float = 2.0,
        keepalive_options: Mapping[int, int] | None = None,
    ) -> None:
        # The lane's options spelled out: the compiled build mis-passes ``**kwargs`` on to ``__init__``.
        super().__init__(
            url,
            credential_provider=credential_provider,
            connect_timeout_s=connect_timeout_s,
            reply_timeout_s=reply_timeout_s,
            keepalive_options=keepalive_options,
        )
        self._max_buffered = max_buffered
        self._inbox: deque[tuple[bytes, bytes]] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._lost = False
        self._paused = False
        self._confirm: dict[bytes, list[asyncio.Future[None]]] = {}

    async def open(self) -> None:
        """Connect and authenticate (raises :class:`LaneUnavailable` or ``TimeoutError``)."""
        await self.execute(b"PING")

    async def subscribe(self, channels: Sequence[str], timeout_s: float) -> None:
        """SUBSCRIBE to ``channels``; returns once Redis confirmed them all, or after ``timeout_s``."""
        if not channels or self._lost:
            return
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[None]] = []
        for channel in channels:
            fut: asyncio.Future[None] = loop.create_future()
            self._confirm.setdefault(channel.encode(), []).append(fut)
            waits.append(fut)
        self._send(b"SUBSCRIBE", *channels)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*waits)

    def unsubscribe(self, channels: Sequence[str]) -> None:
        """UNSUBSCRIBE from ``channels`` (messages already read may still be handed out)."""
        if channels and not self._lost:
            self._send(b"UNSUBSCRIBE", *channels)

    async def messages(self) -> list[tuple[bytes, bytes]]:
        """Every ``(channel, data)`` read so far, oldest first (at least one)."""
        while not self._inbox:
            if self._lost:
                raise LaneUnavailable("registry connection lost")
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        batch = list(self._inbox)
        self._inbox.clear()
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return batch

    def _send(self, *args: Any) -> None:  # no reply to wait for: confirmations and messages come as pushes
        self._enqueue(pack_command(args))

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _on_reply(self, reply: Any) -> None:
        if type(reply) is list and len(reply) == 3:
            kind = reply[0]
            if kind == b"message":
                self._inbox.append((reply[1], reply[2]))
                self._wake()
                if len(self._inbox) >= self._max_buffered and not self._paused and self._transport is not None:
                    self._paused = True
                    self._transport.pause_reading()
                return
            if kind == b"subscribe":
                for fut in self._confirm.pop(reply[1], ()):
                    if not fut.done():
                        fut.set_result(None)
                return
            if kind == b"unsubscribe":
                return
        super()._on_reply(reply)

    def _on_lost(self, protocol: asyncio.BaseProtocol) -> None:
        if protocol is not self._protocol:
            return
        self._lost = True
        self._out.clear()  # never resent: the caller subscribes again on a new connection
        super()._on_lost(protocol)
        for waits in self._confirm.values():
            for fut in waits:
                if not fut.done():
                    fut.set_result(None)
        self._confirm.clear()
        self._wake()


#: Node name used for the plain (non-sharded) channels' connection.
_PLAIN = "plain"


class ClusterListener:
    """Holds the subscriptions of one server on a cluster (see the module docstring).

    ``connect_kwargs`` are the URL's connection settings (credentials, TLS) for the per-node
    connections; ``on_event`` receives the event of every message of a wanted channel (``wanted``: each
    channel with the decoder of its bodies).
    """

    def __init__(
        self,
        cluster: Any,
        connect_kwargs: dict[str, Any],
        on_event: EventCallback,
        socket_connect_timeout_s: float,
    ) -> None:
        self.cluster = cluster
        self.connect_kwargs = connect_kwargs
        self.on_event = on_event
        self.connect_timeout_s = socket_connect_timeout_s
        self.wanted: dict[str, Decoder] = {}
        #: node name -> (client, pubsub, reader task)
        self._nodes: dict[str, tuple[Any, Any, asyncio.Task[None]]] = {}
        self._channel_node: dict[str, str] = {}
        self._confirm: dict[str, asyncio.Event] = {}
        self._broken = asyncio.Event()
        self._lock = asyncio.Lock()
        self.live = False

    def _node_of(self, channel: str) -> tuple[str, str, int]:
        """``(name, host, port)`` of the node that serves ``channel``."""
        if is_sharded_channel(channel):
            node = self.cluster.get_node_from_key(channel)
        else:
            node = self.cluster.get_default_node()
        if node is None:
            raise aioredis.ConnectionError(f"no cluster node serves {channel}")
        name = node.name if is_sharded_channel(channel) else _PLAIN
        return name, node.host, node.port

    async def _pubsub_for(self, name: str, host: str, port: int) -> Any:
        entry = self._nodes.get(name)
        if entry is not None:
            return entry[1]
        client = aioredis.Redis(
            **{**self.connect_kwargs, "host": host, "port": port},
            socket_connect_timeout=self.connect_timeout_s,
        )
        pubsub = client.pubsub()
        task = asyncio.create_task(self._read(name, pubsub), name=f"stickyws-cluster-pubsub-{name}")
        self._nodes[name] = (client, pubsub, task)
        return pubsub

    async def _read(self, name: str, pubsub: Any) -> None:
        try:
            while True:
                if not pubsub.subscribed:
                    await asyncio.sleep(0.05)
                    continue
                msg = await pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
                if msg is None:
                    continue
                kind = as_text(msg.get("type"))
                channel = as_text(msg.get("channel"))
                if kind in ("message", "smessage"):
                    decoder = self.wanted.get(channel)
                    if decoder is not None:
                        try:
                            event = decoder(as_text(msg["data"]))
                        except ValueError:
                            log.warning("ignored a malformed message on %s", channel)
                            continue
                        await self.on_event(event)
                elif kind in ("subscribe", "ssubscribe"):
                    confirmed = self._confirm.pop(channel, None)
                    if confirmed is not None:
                        confirmed.set()
                elif kind == "sunsubscribe" and channel in self.wanted:
                    return  # the slot moved to another node: resubscribe everything
        except asyncio.CancelledError:
            raise
        except Exception:  # a dead node or a protocol surprise: the round ends, everything is redone
            return
        finally:
            self._broken.set()

    async def _subscribe_on(self, channels: Iterable[str]) -> list[asyncio.Event]:
        """Send the subscriptions; returns the events their confirmations set (waited for outside the lock)."""
        events = []
        for channel in channels:
            name, host, port = self._node_of(channel)
            pubsub = await self._pubsub_for(name, host, port)
            event = self._confirm.setdefault(channel, asyncio.Event())
            events.append(event)
            if is_sharded_channel(channel):
                await pubsub.ssubscribe(channel)
            else:
                await pubsub.subscribe(channel)
            self._channel_node[channel] = name
        return events

    @staticmethod
    async def _confirmed(events: list[asyncio.Event], wait_s: float) -> None:
        if wait_s > 0 and events:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    for event in events:
                        await event.wait()

    async def run(self, on_subscribed: Callable[[], Awaitable[None]], backoff_s: float) -> None:
        """Hold the subscriptions until cancelled, redoing them after every failure (see the module docstring)."""
        while True:
            self._broken.clear()
            try:
                async with self._lock:
                    events = await self._subscribe_on(sorted(self.wanted))
                    self.live = True
                await self._confirmed(events, 2.0)
                await on_subscribed()
                await self._broken.wait()
            except (*DOWN_ERRORS, aioredis.RedisError):  # any Redis error ends the round too
                pass
            except BaseException as exc:  # cancelled: close the nodes' connections, then go on ending
                # Not a ``finally`` with an await: the compiled build loses the exception across it.
                self.live = False
                await self._close_nodes()
                raise exc
            self.live = False
            await self._close_nodes()
            with contextlib.suppress(Exception):
                await self.cluster.nodes_manager.initialize()
            await asyncio.sleep(backoff_s)

    async def subscribe(self, channels: Mapping[str, Decoder], wait_s: float) -> None:
        """Add ``channels`` (each with its decoder); returns once Redis confirmed them (or they wait for the
        next round)."""
        asked = list(channels)
        self.wanted.update(channels)
        async with self._lock:  # the round in progress holds it while it subscribes its snapshot
            pending = sorted(c for c in self.wanted if c not in self._channel_node)
            if not self.live:
                return  # the next round subscribes everything wanted
            try:
                await self._subscribe_on(pending)
            except (aioredis.RedisError, OSError):
                self._broken.set()
                return
        # Outside the lock, so other connections subscribe meanwhile; also waits for a confirmation
        # another call is still waiting for (the channel counts only once Redis has confirmed it).
        await self._confirmed([e for c in asked if (e := self._confirm.get(c)) is not None], wait_s)

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        """Drop ``channels``."""
        for channel in channels:
            self.wanted.pop(channel, None)
            self._confirm.pop(channel, None)
            name = self._channel_node.pop(channel, None)
            entry = self._nodes.get(name) if name is not None else None
            if entry is None or not self.live:
                continue
            with contextlib.suppress(aioredis.RedisError, OSError):
                if is_sharded_channel(channel):
                    await entry[1].sunsubscribe(channel)
                else:
                    await entry[1].unsubscribe(channel)

    async def _close_nodes(self) -> None:
        nodes, self._nodes = self._nodes, {}
        self._channel_node.clear()
        for client, pubsub, task in nodes.values():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await client.aclose()
