"""The ``stickyws.v1`` wire protocol: what client and server say to each other, in one place.

Pure and I/O-free: the server and the client both build and parse frames with these
functions, so they cannot drift apart.

Handshake (``GET /ws``, HTTP/1.1 upgrade)
    Subprotocol ``stickyws.v1``. The JWT comes from the ``token`` query parameter, an
    ``Authorization: Bearer`` header, or a subprotocol entry ``stickyws.bearer.<jwt>``. A client
    that resumes adds ``resume=<resumeToken>`` to the query (or header ``X-Stickyws-Resume``).

Client -> server (JSON text frames)
    ``{"type":"send","id":N,"data":<json>}``          an application message
    ``{"type":"subscribe","id":N,"topic":"t"}``       add a topic to the session
    ``{"type":"unsubscribe","id":N,"topic":"t"}``     remove it
    ``id`` is a positive integer, strictly increasing per session. The server acknowledges each
    one after handling it; an id at or below the session's last handled id is a duplicate: it
    is acknowledged again (``"duplicate": true``) and not handled twice.

Server -> client
    ``connected``  first frame: serverId, sessionId, resumeToken, protocol, heartbeatMs,
                   timestamp, resumed, lastClientId, lastServerSeq, subscriptions
    ``ack``        ``{"type":"ack","id":N}`` (+ ``"duplicate": true``)
    ``message``    ``{"type":"message","seq":S,"data":<json>}``; seq increases per session
    ``error``      ``{"type":"error","code":C,"message":M}`` (+ ``"id"`` when it answers one)
    ``reconnect``  ``{"type":"reconnect","reason":R,"retryAfterMs":T}``: close, wait T, reconnect
                   (with the resume token and the load balancer cookie)

Close codes the client acts on: reconnect after 1001, 1006, 1011, 1012, 1013; never after
:data:`CLOSE_TAKEN_OVER` (another connection of the same user replaced this one) or 1008.

Added by the server (issue 3); nothing above changed meaning
    * Handshake rejections: HTTP status with JSON body ``{"error": <code>, "message": <text>}``;
      the codes are the ``REJECT_*`` constants: 401 :data:`REJECT_MISSING_TOKEN`, 403
      :data:`REJECT_INVALID_TOKEN` / :data:`REJECT_ORIGIN` / :data:`REJECT_INVALID_RESUME`, 409
      :data:`REJECT_CONFLICT`, 503 + ``Retry-After`` :data:`REJECT_DRAINING` /
      :data:`REJECT_AT_CAPACITY` / :data:`REJECT_REGISTRY_DOWN`, 426 :data:`REJECT_UPGRADE_REQUIRED`
      (a plain GET on ``/ws``). A client retries 503 after ``Retry-After`` and gives up on 401/403/409.
    * Error codes :data:`ERR_BINARY` (binary frame, then close 1003), :data:`ERR_TOO_BIG` (message
      over the size limit, close 1009), :data:`ERR_HANDLER` (the application handler failed on that
      message; it was not handled and not acknowledged, so the client may resend it),
      :data:`ERR_INTERNAL` (an unexpected server fault; the server closes with 1011 and the client
      reconnects and resends what is not acknowledged).
    * The server closes with 1011 (:data:`CLOSE_INTERNAL_ERROR`) when pongs stop arriving.
    * Replay on resume: a resuming client may add ``lastSeq=<S>`` (:data:`LAST_SEQ_QUERY`, the highest
      ``message`` seq it has received); right after ``connected`` the server sends again every
      ``message`` of the session with a higher seq that it still keeps (the last 64, at most
      256 KiB: ``stickyws.server.session.OUTBOX_LIMIT``/``OUTBOX_MAX_BYTES``). Without
      ``lastSeq`` nothing is replayed. A client drops any ``message`` whose seq it has already seen.
    * :func:`dumps_value`: compact JSON of any value (how payloads are stored for replay).
    * :data:`MAX_MESSAGE_ID` (2**53 - 1, the largest integer a JavaScript client and the registry's
      Lua scripts hold exactly): the server answers a larger id with ``bad_message``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

SUBPROTOCOL = "stickyws.v1"
BEARER_SUBPROTOCOL_PREFIX = "stickyws.bearer."
RESUME_QUERY = "resume"
RESUME_HEADER = "X-Stickyws-Resume"
LAST_SEQ_QUERY = "lastSeq"
WS_PATH = "/ws"
HEALTH_PATH = "/health"

# Close codes (RFC 6455 and the private range).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_ABNORMAL = 1006
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_TAKEN_OVER = 4001
#: Close codes after which a client should reconnect (with backoff).
RECONNECT_CLOSE_CODES = frozenset(
    {CLOSE_GOING_AWAY, CLOSE_ABNORMAL, CLOSE_INTERNAL_ERROR, CLOSE_SERVICE_RESTART, CLOSE_TRY_AGAIN_LATER}
)

CLIENT_TYPES = ("send", "subscribe", "unsubscribe")
#: Largest client message id the server accepts (see the module docstring).
MAX_MESSAGE_ID = 2**53 - 1

# Error codes in ``error`` frames.
ERR_BAD_JSON = "bad_json"
ERR_BAD_MESSAGE = "bad_message"
ERR_UNKNOWN_TYPE = "unknown_type"
ERR_BINARY = "binary_frame"
ERR_TOO_BIG = "message_too_big"
ERR_HANDLER = "handler_failed"
ERR_INTERNAL = "internal_error"

# Handshake rejection codes (the ``error`` field of the JSON body of a refused upgrade).
REJECT_MISSING_TOKEN = "missing_token"
REJECT_INVALID_TOKEN = "invalid_token"
REJECT_ORIGIN = "origin_not_allowed"
REJECT_INVALID_RESUME = "invalid_resume_token"
REJECT_CONFLICT = "connected_elsewhere"
REJECT_DRAINING = "draining"
REJECT_AT_CAPACITY = "at_capacity"
REJECT_REGISTRY_DOWN = "registry_unavailable"
REJECT_UPGRADE_REQUIRED = "upgrade_required"


class ProtocolError(ValueError):
    """A client frame that is not valid ``stickyws.v1``; ``code`` is the error frame's code."""

    def __init__(self, code: str, message: str, msg_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.msg_id = msg_id


@dataclass(frozen=True)
class ClientMessage:
    """A parsed client frame: ``type`` is one of :data:`CLIENT_TYPES`."""

    type: str
    id: int
    data: Any = None
    topic: str = ""

    def to_json(self) -> str:
        """The frame as the client sends it."""
        body: dict[str, Any] = {"type": self.type, "id": self.id}
        if self.type == "send":
            body["data"] = self.data
        else:
            body["topic"] = self.topic
        return dumps(body)


def dumps(body: dict[str, Any]) -> str:
    """Compact JSON, as every frame is sent."""
    return json.dumps(body, separators=(",", ":"))


def dumps_value(value: Any) -> str:
    """Compact JSON of any JSON value."""
    return json.dumps(value, separators=(",", ":"))


def parse_client_message(text: str) -> ClientMessage:
    """Parse one client text frame or raise :class:`ProtocolError` (never anything else)."""
    try:
        body = json.loads(text)
    except ValueError:
        raise ProtocolError(ERR_BAD_JSON, "frame is not valid JSON") from None
    if not isinstance(body, dict):
        raise ProtocolError(ERR_BAD_MESSAGE, "frame must be a JSON object")
    msg_id = body.get("id")
    valid_id = isinstance(msg_id, int) and not isinstance(msg_id, bool) and msg_id > 0
    kind = body.get("type")
    if kind not in CLIENT_TYPES:
        raise ProtocolError(ERR_UNKNOWN_TYPE, f"unknown type {kind!r}", msg_id if valid_id else None)
    if not valid_id:
        raise ProtocolError(ERR_BAD_MESSAGE, "id must be a positive integer")
    assert isinstance(msg_id, int)
    if kind == "send":
        if "data" not in body:
            raise ProtocolError(ERR_BAD_MESSAGE, "send needs data", msg_id)
        return ClientMessage("send", msg_id, data=body["data"])
    topic = body.get("topic")
    if not isinstance(topic, str) or not topic or len(topic) > 256:
        raise ProtocolError(ERR_BAD_MESSAGE, "topic must be a non-empty string of at most 256 characters", msg_id)
    return ClientMessage(kind, msg_id, topic=topic)


def connected(
    *,
    server_id: str,
    session_id: str,
    resume_token: str,
    heartbeat_ms: int,
    resumed: bool,
    last_client_id: int,
    last_server_seq: int,
    subscriptions: list[str],
) -> str:
    """The first frame of every connection."""
    return dumps(
        {
            "type": "connected",
            "serverId": server_id,
            "sessionId": session_id,
            "resumeToken": resume_token,
            "protocol": SUBPROTOCOL,
            "heartbeatMs": heartbeat_ms,
            "timestamp": int(time.time() * 1000),
            "resumed": resumed,
            "lastClientId": last_client_id,
            "lastServerSeq": last_server_seq,
            "subscriptions": subscriptions,
        }
    )


def ack(msg_id: int, *, duplicate: bool = False) -> str:
    """Acknowledge client message ``msg_id``."""
    body: dict[str, Any] = {"type": "ack", "id": msg_id}
    if duplicate:
        body["duplicate"] = True
    return dumps(body)


def message(seq: int, data: Any) -> str:
    """A server-to-client application message."""
    return dumps({"type": "message", "seq": seq, "data": data})


def error(code: str, text: str, msg_id: int | None = None) -> str:
    """An error frame; the connection stays open."""
    body: dict[str, Any] = {"type": "error", "code": code, "message": text}
    if msg_id is not None:
        body["id"] = msg_id
    return dumps(body)


def reconnect(reason: str, retry_after_ms: int) -> str:
    """Tell the client to reconnect after ``retry_after_ms``."""
    return dumps({"type": "reconnect", "reason": reason, "retryAfterMs": retry_after_ms})
