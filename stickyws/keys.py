"""The registry's key schema: every Redis key and channel name stickyws uses, in one place.

The server, the drain-notifier Lambda, the twin and the auditor all build names here, so a
rename cannot leave one of them behind.

========================================  =======  ==============================================
key / channel                             kind     holds
========================================  =======  ==============================================
``ws:user:{userId}``                      string   id of the server holding the user's connection
``ws:session:{sessionId}``                hash     ``user``, ``lastClientId``, ``lastServerSeq``, ``subs``
                                                   (JSON), replay buffer ``outFirst``, ``outBytes``, ``m:<seq>``
``ws:server:{serverId}:heartbeat``        string   JSON ``{serverId, connections, status, ts}``
``ws:drain:{serverId}``                   string   JSON drain notice (kept so a late reader sees it)
``ws:drain:{serverId}``                   channel  the same notice, published for live servers
``ws:reconnect:{userId}``                 channel  JSON reconnect instruction for other components
``ws:takeover:{serverId}``                channel  JSON ``{userId, by}``: close that user's socket
========================================  =======  ==============================================
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

PREFIX = "ws"
#: How long a drain notice key stays readable; longer than any deregistration delay (max 3600 s).
DRAIN_NOTICE_TTL_S = 7200


def user_key(user_id: str) -> str:
    """Routing key: which server holds ``user_id``'s connection."""
    return f"{PREFIX}:user:{user_id}"


def session_key(session_id: str) -> str:
    """Resumable session state of ``session_id``."""
    return f"{PREFIX}:session:{session_id}"


def heartbeat_key(server_id: str) -> str:
    """Liveness and load of ``server_id``."""
    return f"{PREFIX}:server:{server_id}:heartbeat"


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
