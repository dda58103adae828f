"""The registry's scripts on a Redis Cluster: one auto-pipelined lane per primary.

:class:`ClusterLanes` sends each script to the primary that owns its keys' slot (every script's keys
share one slot, :mod:`stickyws.keys`), over a :class:`~stickyws.registry.redis_lane.RedisLane` to that
node, so the commits of one loop iteration that go to one node leave in one socket write, as on one
primary. The slot map is redis-py's (``RedisCluster.nodes_manager``), which the registry's cluster
client keeps. Redirections:

* ``MOVED`` (the slot has a new owner, e.g. after a failover or resharding): the slot map is read
  again and the script is sent to the new owner, at most :data:`MAX_REDIRECTS` times;
* ``ASK`` (the slot is being migrated and the key is already on the target): ``ASKING`` and the script
  go to the target in one write (``ASKING`` holds for the next command of that connection only), the
  slot map is left as it is;
* ``TRYAGAIN``/``CLUSTERDOWN`` and a lost or refused connection: :class:`LaneUnavailable` (the registry
  turns it into "unavailable" and the server applies its outage policy); the slot map is read again
  in the background, at most once per :data:`REFRESH_MIN_S`, so calls find the promoted replica.

Measured against redis-py's cluster client (bench/findings.md, *Cluster-aware async clients*): redis-py
8.1 fails a read of a slot in migration (``ASK``), and a cluster refuses its pipelined ``EVALSHA``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from stickyws.registry.errors import LaneReplyError, LaneUnavailable
from stickyws.registry.redis_lane import LaneScript, RedisLane

#: Redirections followed for one call before it fails.
MAX_REDIRECTS = 3
#: Shortest time between two background reads of the slot map.
REFRESH_MIN_S = 0.2
_DOWN_PREFIXES = ("TRYAGAIN", "CLUSTERDOWN")


class ClusterLanes:
    """Scripts routed to their slot's primary (see the module docstring).

    ``cluster``: an initialized ``redis.asyncio.cluster.RedisCluster`` (its slot map is used and
    refreshed); ``template``: a lane whose TLS, credentials and timeouts every node's lane copies.
    """

    def __init__(self, cluster: Any, template: RedisLane) -> None:
        self._cluster = cluster
        self._template = template
        self._lanes: dict[tuple[str, int], RedisLane] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0
        self._closed = False

    def _lane(self, host: str, port: int) -> RedisLane:
        lane = self._lanes.get((host, port))
        if lane is None:
            lane = self._lanes[(host, port)] = self._template.at(host, port)
        return lane

    def lane_for(self, key: str) -> RedisLane:
        """The lane of the primary that owns ``key``'s slot, as far as the slot map knows (raises
        :class:`LaneUnavailable` when it knows none, e.g. in a failover)."""
        try:
            node = self._cluster.get_node_from_key(key)
        except Exception as exc:
            self.refresh_soon()
            raise LaneUnavailable(f"no primary known for the slot of {key!r}: {exc}") from None
        return self._lane(node.host, node.port)

    async def evalsha(self, script: LaneScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """Run ``script`` on the primary of ``keys[0]``'s slot, following MOVED and ASK."""
        return (await self.evalsha_with_lane(script, keys, args))[0]

    async def evalsha_with_lane(
        self, script: LaneScript, keys: Sequence[str], args: Sequence[str | int]
    ) -> tuple[Any, RedisLane]:
        """:meth:`evalsha`, and the lane of the node that ran it."""
        if self._closed:
            raise LaneUnavailable("the registry lanes are closed")
        lane = self.lane_for(keys[0])
        for _ in range(MAX_REDIRECTS):
            try:
                return await lane.evalsha(script, keys, args), lane
            except LaneUnavailable:
                self.refresh_soon()
                raise
            except LaneReplyError as exc:
                message = str(exc)
                if message.startswith("MOVED"):
                    await self.refresh()
                    lane = self._redirect_target(message)
                    continue
                if message.startswith("ASK"):
                    target = self._redirect_target(message)
                    asking = target.execute(b"ASKING")  # queued in this iteration: one write with the script
                    reply = target.execute(b"EVAL", script.source, len(keys), *keys, *args)
                    with contextlib.suppress(LaneReplyError):
                        await asking
                    try:
                        return await reply, target
                    except LaneReplyError as again:
                        if not str(again).startswith(("ASK", "MOVED")):
                            raise
                        await self.refresh()
                        lane = self.lane_for(keys[0])
                        continue
                if message.startswith(_DOWN_PREFIXES):
                    self.refresh_soon()
                    raise LaneUnavailable(f"registry answered {message}") from None
                raise
        raise LaneUnavailable(f"the slot of {keys[0]!r} moved more than {MAX_REDIRECTS} times in one call")

    def _redirect_target(self, message: str) -> RedisLane:
        """The lane named by ``MOVED <slot> <host>:<port>`` or ``ASK <slot> <host>:<port>``."""
        address = message.split()[2]
        host, _, port = address.rpartition(":")
        return self._lane(host or self._template._ep.host, int(port))

    async def refresh(self) -> None:
        """Read the slot map again now (shared with a refresh already running)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._read_map())
        await asyncio.shield(self._refreshing)

    def refresh_soon(self) -> None:
        """Read the slot map again in the background, unless that was done within :data:`REFRESH_MIN_S`."""
        if self._closed or (self._refreshing is not None and not self._refreshing.done()):
            return
        if time.monotonic() - self._refreshed_at < REFRESH_MIN_S:
            return
        self._refreshing = asyncio.ensure_future(self._read_map())
        self._refreshing.add_done_callback(_retrieve)

    async def _read_map(self) -> None:
        self._refreshed_at = time.monotonic()
        try:
            await self._cluster.nodes_manager.initialize()
        except Exception:  # no node answers (yet): the next failure asks again
            return
        known = {(n.host, n.port) for n in self._cluster.get_primaries()}
        for address in [a for a in self._lanes if a not in known]:
            await self._lanes.pop(address).close()

    async def close(self) -> None:
        """Close every node's lane (idempotent)."""
        self._closed = True
        if self._refreshing is not None:
            self._refreshing.cancel()
            with contextlib.suppress(BaseException):
                await self._refreshing
        lanes, self._lanes = self._lanes, {}
        for lane in lanes.values():
            await lane.close()


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
