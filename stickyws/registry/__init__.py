"""The connection registry: routes, sessions, topic logs, liveness and the bus, used by the server
(:mod:`stickyws.server`) and by backends that push (:mod:`stickyws.publish`).

Modules, pure first:

* :mod:`~stickyws.registry.errors`: the exceptions, all under :class:`RegistryError`.
* :mod:`~stickyws.registry.records`: the session record, the commit and the outbox trim rule.
* :mod:`~stickyws.registry.wire`: the pub/sub bodies (build and parse) and the bus's typed events.
* :mod:`~stickyws.registry.interfaces`: the Protocols by concern (routes, sessions, topics, liveness, bus),
  the full :class:`Registry`, and the results.
* :mod:`~stickyws.registry.memory`: the in-memory registry (one server process).
* :mod:`~stickyws.registry.redis_registry`: the registry on Redis, composed of
  :mod:`~stickyws.registry.redis_store` (the scripts' callers) and :mod:`~stickyws.registry.redis_bus`
  (pub/sub) on :mod:`~stickyws.registry.redis_connection` (mode, pool, lanes, the down-error mapping);
  :mod:`~stickyws.registry.redis_lane` (one auto-pipelined connection) and
  :mod:`~stickyws.registry.cluster_lanes` (one per primary of a cluster) carry the scripts,
  :mod:`~stickyws.registry.redis_listener` the pub/sub connections, and :mod:`~stickyws.registry.scripts`
  loads the Lua scripts from its ``.lua`` files.

Key and channel names come from :mod:`stickyws.keys`. This package imports redis only in its
``redis_*``, ``cluster_lanes`` and ``scripts`` modules, so the names below need no Redis client.
"""

from __future__ import annotations

from stickyws.registry.errors import (
    NotYetReplicated,
    RegistryError,
    RegistryUnavailable,
    SessionReplaced,
)
from stickyws.registry.interfaces import (
    Bus,
    ClaimResult,
    Liveness,
    OutboxRead,
    PushResult,
    Registry,
    Routes,
    Sessions,
    TopicHistory,
    TopicPosition,
    Topics,
)
from stickyws.registry.memory import InMemoryRegistry
from stickyws.registry.wire import BusEvent, Publication, Takeover, UserPush

__all__ = [
    "Bus",
    "BusEvent",
    "ClaimResult",
    "InMemoryRegistry",
    "Liveness",
    "NotYetReplicated",
    "OutboxRead",
    "Publication",
    "PushResult",
    "Registry",
    "RegistryError",
    "RegistryUnavailable",
    "Routes",
    "SessionReplaced",
    "Sessions",
    "Takeover",
    "TopicHistory",
    "TopicPosition",
    "Topics",
    "UserPush",
]
