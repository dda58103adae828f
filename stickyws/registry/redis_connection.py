"""The registry's connections to Redis: the mode (one primary or a cluster), the pool, the lanes, and
the ONE mapping of a connection failure to :class:`~stickyws.registry.errors.RegistryUnavailable`.

* the scripts go over :mod:`stickyws.registry.redis_lane` (one auto-pipelined connection on one
  primary) or :mod:`stickyws.registry.cluster_lanes` (one per primary of a cluster): ``EVALSHA``,
  ``EVAL`` again after a restart flushed the script cache, the commits of one loop iteration in one
  socket write per node;
* pub/sub on a connection of its own (:mod:`stickyws.registry.redis_listener`, driven by
  :mod:`stickyws.registry.redis_bus`);
* the rest (heartbeats, drain notices, reads in bulk) through redis-py: a
  :class:`redis.asyncio.BlockingConnectionPool` of :data:`POOL_SIZE` connections, where a burst waits
  for a free connection (up to :data:`POOL_TIMEOUT_S`) instead of failing, which redis-py 8.1's plain
  pool does past its limit with ``MaxConnectionsError``;
* short timeouts and no client-side retries, so an outage turns into ``RegistryUnavailable`` within
  about a second (:meth:`RedisConnection._down`, the only place that turns one of :data:`DOWN_ERRORS`
  into it) and the server applies its policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider

from stickyws import keys
from stickyws.registry.cluster_lanes import ClusterLanes
from stickyws.registry.errors import RegistryUnavailable
from stickyws.registry.redis_lane import LaneScript, RedisLane

#: Connections in the pool (the settings model has no field for it yet).
POOL_SIZE = 64
#: How long a call waits for a free pooled connection.
POOL_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0
#: Replicas a commit or a push waits for before it is acknowledged (settings ``ack_wait_replicas``), at
#: most as many as the primary has; and how long (``ack_wait_timeout_ms``).
ACK_WAIT_REPLICAS = 1
ACK_WAIT_TIMEOUT_MS = 1000
#: TCP keepalive of the registry connections: a registry that went silent (a partition, not a restart)
#: is noticed within about 5 + 2 x 3 = 11 s, also by the pub/sub listener, which reads without a timeout.
KEEPALIVE_OPTIONS: dict[int, int] = (
    {socket.TCP_KEEPIDLE: 5, socket.TCP_KEEPINTVL: 2, socket.TCP_KEEPCNT: 3} if hasattr(socket, "TCP_KEEPIDLE") else {}
)

#: Errors that mean "the registry cannot serve us now" (READONLY: a replica after a failover; a lane's
#: :class:`~stickyws.registry.errors.LaneUnavailable` is a ``ConnectionError``, so an ``OSError``).
DOWN_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    # A cluster in failover: no primary for a slot yet, or a slot in migration.
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    redis.exceptions.SlotNotCoveredError,
    OSError,
    asyncio.TimeoutError,
)
_T = TypeVar("_T")


def reraise_if_cancelling() -> None:
    """Raise ``CancelledError`` if this task was cancelled: redis-py may turn a cancelled read into a
    connection error, and a retry loop that swallowed it would never stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def as_text(value: Any) -> str:
    """A reply's bytes (or anything else) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisConnection:
    """The connections of a Redis registry: one primary, or a Redis Cluster (see the module docstring).

    ``cluster``: ``None`` (the default) asks the registry itself on first use (``INFO cluster``), so
    an ElastiCache configuration endpoint works as it is; ``True``/``False`` skip the question.
    ``credential_provider`` (e.g. :mod:`stickyws.registry_auth`) authenticates every connection.
    ``ack_wait_replicas``/``ack_wait_timeout_ms``: the replica wait of commits, pushes and catch-up reads.
    """

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
        self._ack_wait_replicas = ack_wait_replicas
        self._ack_wait_timeout_ms = ack_wait_timeout_ms
        self._credential_provider = credential_provider
        self.available = True
        self._url = url
        self._pool_size = pool_size
        self._pool = aioredis.BlockingConnectionPool.from_url(
            url,
            credential_provider=credential_provider,
            max_connections=pool_size,
            timeout=POOL_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_keepalive=True,
            socket_keepalive_options=KEEPALIVE_OPTIONS,
        )
        self._client: Any = aioredis.Redis(connection_pool=self._pool, retry=Retry(NoBackoff(), 0))
        self._cluster_client: Any = None
        #: ``"single"`` or ``"cluster"`` once known.
        self.mode: str | None = None if cluster is None else ("cluster" if cluster else "single")
        self._mode_lock = asyncio.Lock()
        self._closed = False
        #: Where the scripts go once the mode is known: one auto-pipelined connection to the primary, or
        #: one to each primary of a cluster.
        self.lane: RedisLane | ClusterLanes | None = None

    @property
    def is_cluster(self) -> bool:
        """True on a Redis Cluster (known after the first call, or when given)."""
        return self.mode == "cluster"

    def _new_lane(self) -> RedisLane:
        return RedisLane(
            self._url,
            credential_provider=self._credential_provider,
            connect_timeout_s=CONNECT_TIMEOUT_S,
            reply_timeout_s=SOCKET_TIMEOUT_S,
            keepalive_options=KEEPALIVE_OPTIONS,
        )

    async def _ensure_mode(self) -> None:
        """Learn whether the registry is a cluster (once), and switch to the cluster client if so."""
        async with self._mode_lock:
            if self.mode is None:
                info = await self._client.info("cluster")
                self.mode = "cluster" if int(info.get("cluster_enabled", 0)) == 1 else "single"
            if self.mode == "single" and self.lane is None:
                self.lane = self._new_lane()
            if self.mode == "cluster" and self._cluster_client is None:
                self._cluster_client = RedisCluster.from_url(
                    self._url,
                    credential_provider=self._credential_provider,
                    socket_timeout=SOCKET_TIMEOUT_S,
                    socket_connect_timeout=CONNECT_TIMEOUT_S,
                    max_connections=self._pool_size,
                )
                await self._cluster_client.initialize()
                single, self._client = self._client, self._cluster_client
                self.lane = ClusterLanes(self._cluster_client, self._new_lane())
                with contextlib.suppress(Exception):
                    await single.aclose()
                with contextlib.suppress(Exception):
                    await self._pool.disconnect()

    def user_channel(self, user_id: str) -> str | None:
        """The channel the holder of ``user_id`` must subscribe to for pushes: the user's own sharded
        channel on a cluster; ``None`` on one primary (pushes come on the server's channel)."""
        return keys.user_push_channel(user_id) if self.is_cluster else None

    @property
    def client(self) -> Any:
        """The underlying client, ``redis.asyncio.Redis`` or ``RedisCluster`` (for tests and the local twin)."""
        return self._client

    def _down(self, exc: BaseException) -> RegistryUnavailable:
        """What a caller sees for one of :data:`DOWN_ERRORS`: marks the registry unavailable (re-raises a
        pending cancellation first). Every ``except DOWN_ERRORS`` raises this."""
        self.available = False
        reraise_if_cancelling()
        return RegistryUnavailable(f"registry unreachable: {type(exc).__name__}: {exc}")

    async def _call(self, make: Callable[[], Awaitable[_T]]) -> _T:
        try:
            if self.lane is None:
                await self._ensure_mode()
            result = await make()
        except DOWN_ERRORS as exc:
            raise self._down(exc) from None
        self.available = True
        return result

    async def _lanes(self) -> RedisLane | ClusterLanes:
        """Where the scripts go, once the mode is known (raises one of :data:`DOWN_ERRORS` until then)."""
        if self.lane is None:
            await self._ensure_mode()
        assert self.lane is not None
        return self.lane

    async def _run(
        self, script: LaneScript, call_keys: Sequence[str], args: Sequence[str | int]
    ) -> tuple[Any, RedisLane]:
        """Run one script on its node's lane: the reply, and that lane (a ``WAIT`` must follow on it)."""
        try:
            lanes = self.lane or await self._lanes()
            if type(lanes) is RedisLane:  # one primary: one coroutine fewer on every commit
                result = await lanes.evalsha(script, call_keys, args), lanes
            else:
                result = await lanes.evalsha_with_lane(script, call_keys, args)
        except DOWN_ERRORS as exc:
            raise self._down(exc) from None
        self.available = True
        return result

    async def close(self) -> None:
        """Release connections (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.lane is not None:
            await self.lane.close()
        with contextlib.suppress(Exception):
            await self._client.aclose()
        with contextlib.suppress(Exception):
            await self._pool.disconnect()
