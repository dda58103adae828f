"""The registry's key schema: every Redis key and channel name stickyws uses, in one place.

The server, the publisher, the drain-notifier Lambda, the twin and the auditor all build names
here, so a rename cannot leave one of them behind.

Every key of one user lives in ONE Redis Cluster hash slot (hash tag ``{u:<user>}``), and every
key of one topic in one slot (``{t:<topic>}``), so each registry script touches one slot. User ids
and topic names are encoded (:func:`encode_id`): ``{``, ``}``, ``%``, ``:`` and anything outside
printable ASCII become ``%XX`` escapes of their UTF-8 bytes, so no id can pick its slot (it can
never close the hash tag) or collide with another id's keys.

==============================================  =======  ===========================================
key / channel                                   kind     holds
==============================================  =======  ===========================================
``ws:{u:<user>}:route``                         string   id of the server holding the user's connection
``ws:{u:<user>}:session``                       hash     ``sid``, ``lastClientId``, ``lastServerSeq``,
                                                         ``subs`` (JSON), outbox ``outFirst``,
                                                         ``outBytes``, ``m:<seq>``
``ws:{t:<topic>}:meta``                         hash     ``epoch``, ``offset`` (last assigned)
``ws:{t:<topic>}:log``                          stream   the topic's retained publications
                                                         (fields ``o`` offset, ``d`` data JSON)
``ws:{t:<topic>}:pub``                          channel  each publication as it is assigned
``ws:{u:<user>}:push``                          channel  user messages, on a Redis Cluster (sharded pub/sub)
``ws:server:<serverId>:heartbeat``              string   JSON ``{serverId, connections, status, ts,``
                                                         ``revision}`` (:data:`HEARTBEAT_REVISION`)
``ws:server:<serverId>:push``                   channel  user messages for that server's users (one primary)
``ws:servers:heartbeat``                        zset     ids of the servers that write heartbeats (score: last
                                                         write, epoch ms); readers prune ids whose heartbeat is gone
``ws:drain:<serverId>``                         string   JSON drain notice (kept so a late reader sees it)
``ws:drain:<serverId>``                         channel  the same notice, published for live servers
``ws:reconnect:<userId>``                       channel  JSON reconnect instruction for other components
``ws:takeover:<serverId>``                      channel  JSON ``{userId, by}``: close that user's socket
==============================================  =======  ===========================================

A user has one session at a time (one connection per user: a newer connection takes over or is
refused). A handshake without a resume token, or with one for a session that is no longer the
user's, starts a fresh session in ``ws:{u:<user>}:session``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass

PREFIX = "ws"
#: How long a drain notice key stays readable; longer than any deregistration delay (max 3600 s).
DRAIN_NOTICE_TTL_S = 7200
#: Characters kept as they are in encoded ids (everything else is ``%XX``-escaped).
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.@+=!~*'()$,;/|#&?<>[]^`\" ")
_all_safe = re.compile("[" + re.escape("".join(sorted(_SAFE))) + "]*").fullmatch


def encode_id(value: str) -> str:
    """``value`` with ``{``, ``}``, ``%``, ``:`` and non-printable or non-ASCII characters as ``%XX``.

    Injective (``%`` itself is escaped) and never contains a brace, so an id cannot choose a hash
    slot or reach another id's keys.
    """
    if _all_safe(value) is not None:
        return value
    return "".join(ch if ch in _SAFE else "".join(f"%{b:02X}" for b in ch.encode()) for ch in value)


def user_tag(user_id: str) -> str:
    """The hash tag shared by every key of ``user_id``."""
    return f"{{u:{encode_id(user_id)}}}"


def topic_tag(topic: str) -> str:
    """The hash tag shared by every key of ``topic``."""
    return f"{{t:{encode_id(topic)}}}"


def user_key(user_id: str) -> str:
    """Routing key: which server holds ``user_id``'s connection."""
    return f"{PREFIX}:{user_tag(user_id)}:route"


def session_key(user_id: str) -> str:
    """The resumable session of ``user_id`` (its id is the hash's ``sid`` field)."""
    return f"{PREFIX}:{user_tag(user_id)}:session"


def topic_meta_key(topic: str) -> str:
    """Epoch and last offset of ``topic``."""
    return f"{PREFIX}:{topic_tag(topic)}:meta"


def topic_log_key(topic: str) -> str:
    """The bounded stream of ``topic``'s retained publications."""
    return f"{PREFIX}:{topic_tag(topic)}:log"


def topic_channel(topic: str) -> str:
    """Channel on which each publication of ``topic`` is announced to the servers that carry it."""
    return f"{PREFIX}:{topic_tag(topic)}:pub"


def push_key(user_id: str, key: str) -> str:
    """A push's idempotency key in the user's slot (holds the seq it got; a retry with the same key
    gets that seq back instead of a second message)."""
    return f"{PREFIX}:{user_tag(user_id)}:pushkey:{encode_id(key)}"


def user_push_channel(user_id: str) -> str:
    """Sharded channel of ``user_id``'s messages on a Redis Cluster (in the user's slot, so the push
    script can publish it with ``SPUBLISH``); on one primary pushes use :func:`push_channel`."""
    return f"{PREFIX}:{user_tag(user_id)}:push"


def is_sharded_channel(channel: str) -> bool:
    """Whether ``channel`` lives in one user's or one topic's slot (``SSUBSCRIBE`` on a cluster)."""
    return channel.startswith((f"{PREFIX}:{{u:", f"{PREFIX}:{{t:"))


def is_user_push_channel(channel: str) -> bool:
    """Whether ``channel`` is a user's sharded push channel (:func:`user_push_channel`)."""
    return channel.startswith(f"{PREFIX}:{{u:") and channel.endswith("}:push")


def is_topic_channel(channel: str) -> bool:
    """Whether ``channel`` is a topic's publication channel (:func:`topic_channel`)."""
    return channel.startswith(f"{PREFIX}:{{t:") and channel.endswith("}:pub")


def heartbeat_key(server_id: str) -> str:
    """Liveness and load of ``server_id``."""
    return f"{PREFIX}:server:{server_id}:heartbeat"


def heartbeat_index_key() -> str:
    """The index of the servers that write heartbeats (a sorted set of server ids; see the table above)."""
    return f"{PREFIX}:servers:heartbeat"


def heartbeat_server_id(key: str) -> str | None:
    """The server id of a :func:`heartbeat_key` (``None`` for any other key)."""
    head, tail = f"{PREFIX}:server:", ":heartbeat"
    if key.startswith(head) and key.endswith(tail) and len(key) > len(head) + len(tail):
        return key[len(head) : -len(tail)]
    return None


#: The heartbeat's field naming the server's deployment revision ("" or absent: none).
HEARTBEAT_REVISION = "revision"


def push_channel(server_id: str) -> str:
    """Channel on which user messages reach the server that holds the user."""
    return f"{PREFIX}:server:{server_id}:push"


def drain_key(server_id: str) -> str:
    """Drain notice for ``server_id``: a key with TTL and a pub/sub channel of the same name."""
    return f"{PREFIX}:drain:{server_id}"


def reconnect_channel(user_id: str) -> str:
    """Channel on which a draining server announces that ``user_id`` must reconnect."""
    return f"{PREFIX}:reconnect:{user_id}"


def takeover_channel(server_id: str) -> str:
    """Channel on which another server asks ``server_id`` to close a user's connection."""
    return f"{PREFIX}:takeover:{server_id}"


@dataclass(frozen=True)
class DrainNotice:
    """What the drain notifier tells a server whose task ECS has started to stop.

    ``source`` names the trigger (``ecs-task-state-change``, ``twin``, ...); ``reason`` is ECS's
    ``stoppedReason`` when it has one; ``issued_at_ms`` is epoch milliseconds.
    """

    server_id: str
    source: str
    reason: str = ""
    issued_at_ms: int = 0

    def to_json(self) -> str:
        """The notice as the JSON text stored under and published on :func:`drain_key`."""
        body = asdict(self)
        body["issued_at_ms"] = self.issued_at_ms or int(time.time() * 1000)
        return json.dumps(
            {
                "type": "drain",
                "serverId": body["server_id"],
                "source": body["source"],
                "reason": body["reason"],
                "issuedAtMs": body["issued_at_ms"],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> DrainNotice:
        """Parse a notice; raises ``ValueError`` for text that is not one."""
        try:
            body = json.loads(text)
            if body.get("type") != "drain":
                raise ValueError("not a drain notice")
            return cls(
                server_id=str(body["serverId"]),
                source=str(body.get("source", "")),
                reason=str(body.get("reason", "")),
                issued_at_ms=int(body.get("issuedAtMs", 0)),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed drain notice: {exc}") from None
