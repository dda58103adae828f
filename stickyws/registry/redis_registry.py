"""The registry on Redis, one primary or a Redis Cluster: the store and the bus on one set of connections.

:class:`RedisRegistry` is a :class:`~stickyws.registry.interfaces.Registry`: the script callers of
:class:`~stickyws.registry.redis_store.RedisStore` and the pub/sub of
:class:`~stickyws.registry.redis_bus.RedisBus`, both on the connections, mode and down-error mapping of
:class:`~stickyws.registry.redis_connection.RedisConnection`. Composed by inheritance, not delegation:
a commit per message goes straight to the store's method (no extra call, await or lookup). The line is
single (:class:`RedisRegistry` <- :class:`~stickyws.registry.redis_bus.RedisBus` <- ``RedisStore`` <-
``RedisConnection``), as the compiled build requires.
"""

from __future__ import annotations

from stickyws.registry.redis_bus import RedisBus


class RedisRegistry(RedisBus):
    """:class:`~stickyws.registry.interfaces.Registry` on Redis (see the module docstring).

    ``url``: ``redis://``, ``rediss://`` or ``unix://``; the options are those of
    :class:`~stickyws.registry.redis_connection.RedisConnection` (``pool_size``, ``credential_provider``,
    ``cluster``, ``ack_wait_replicas``, ``ack_wait_timeout_ms``).
    """
