"""The registry's exceptions: one base, :class:`RegistryError`, for everything the package raises.

::

    RegistryError
    ├── RegistryUnavailable          the store cannot be reached now; callers apply registry_down_policy
    │   └── NotYetReplicated         a catch-up read found messages no replica is known to hold yet
    ├── SessionReplaced              the user's session is another connection's now
    ├── LaneUnavailable              (also a ConnectionError) a Redis lane cannot serve: connect failed,
    │                                connection lost, or not a primary (stickyws.registry.redis_lane)
    └── LaneReplyError               Redis answered a lane's command with an error reply

The Redis implementation turns every connection-level failure into :class:`RegistryUnavailable` in
one place (:func:`stickyws.registry.redis_connection.RedisConnection._down`); the lane errors reach a
caller of the registry only through that mapping.
"""

from __future__ import annotations

from stickyws.errors import RegistryError

__all__ = [
    "LaneReplyError",
    "LaneUnavailable",
    "NotYetReplicated",
    "RegistryError",
    "RegistryUnavailable",
    "SessionReplaced",
]


class RegistryUnavailable(RegistryError):
    """The registry (Redis) cannot be reached; callers apply ``registry_down_policy``."""


class NotYetReplicated(RegistryUnavailable):
    """A catch-up read found messages that no replica is known to hold yet (``ack_wait_replicas`` did not
    confirm within ``ack_wait_timeout_ms``): nothing is lost, nothing may be shown yet; read again later.

    A subclass of :class:`RegistryUnavailable`, so a caller that does not know it treats the read as an
    outage (never as a loss)."""


class SessionReplaced(RegistryError):
    """The user's session in the registry is no longer this connection's (a newer connection took over)."""


class LaneUnavailable(RegistryError, ConnectionError):
    """The registry cannot be reached on this lane now (connect failed, connection lost, or not a primary)."""


class LaneReplyError(RegistryError):
    """Redis answered a command with an error reply (the message is Redis's own)."""
