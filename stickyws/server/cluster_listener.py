"""Pub/sub on a Redis Cluster: plain channels on one node, sharded channels on their slot's primary.

A Redis Cluster forwards a plain ``PUBLISH`` to every node, so the low-volume server channels
(drain notice, takeover) are subscribed with ``SUBSCRIBE`` on any one node. The high-volume ones
(a user's messages ``ws:{u:<user>}:push``, a topic's publications ``ws:{t:<topic>}:pub``) are
sharded: the registry's scripts publish them with ``SPUBLISH`` in the slot of the keys they write,
and the listener holds ``SSUBSCRIBE`` on the primary that owns that slot, one connection per node.

Failover or resharding: any reader that fails (the node died, or Redis sent ``sunsubscribe`` for a
channel whose slot moved) ends the round; the listener closes every node connection, refreshes the
cluster's slot map, subscribes everything again and calls ``on_subscribed``, whose caller reads back
whatever was published meanwhile (the registry keeps it). Nothing relies on a message not being lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio as aioredis

from stickyws.keys import is_sharded_channel

#: Node name used for the plain (non-sharded) channels' connection.
_PLAIN = "plain"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ClusterListener:
    """Holds the subscriptions of one server on a cluster (see the module docstring).

    ``connect_kwargs`` are the URL's connection settings (credentials, TLS) for the per-node
    connections; ``on_message(channel, text)`` receives every message of a wanted channel.
    """

    def __init__(
        self,
        cluster: Any,
        connect_kwargs: dict[str, Any],
        on_message: Callable[[str, str], Awaitable[None]],
        socket_connect_timeout_s: float,
    ) -> None:
        self.cluster = cluster
        self.connect_kwargs = connect_kwargs
        self.on_message = on_message
        self.connect_timeout_s = socket_connect_timeout_s
        self.wanted: set[str] = set()
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
                kind = _text(msg.get("type"))
                channel = _text(msg.get("channel"))
                if kind in ("message", "smessage"):
                    if channel in self.wanted:
                        await self.on_message(channel, _text(msg["data"]))
                elif kind in ("subscribe", "ssubscribe"):
                    event = self._confirm.pop(channel, None)
                    if event is not None:
                        event.set()
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
            except (TimeoutError, aioredis.ConnectionError, aioredis.TimeoutError, OSError):
                pass
            except aioredis.RedisError:
                pass
            finally:
                self.live = False
                await self._close_nodes()
            with contextlib.suppress(Exception):
                await self.cluster.nodes_manager.initialize()
            await asyncio.sleep(backoff_s)

    async def subscribe(self, channels: Iterable[str], wait_s: float) -> None:
        """Add ``channels``; returns once Redis confirmed them (or they wait for the next round)."""
        asked = list(channels)
        self.wanted.update(asked)
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
            self.wanted.discard(channel)
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
