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

Added by the server; nothing above changed meaning
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
      256 KiB: ``stickyws.registry.records.OUTBOX_LIMIT``/``OUTBOX_MAX_BYTES``). Without
      ``lastSeq`` nothing is replayed. A client drops any ``message`` whose seq it has already seen.
    * :func:`dumps_value`: compact JSON of any value (how payloads are stored for replay).
    * :data:`MAX_MESSAGE_ID` (2**53 - 1, the largest integer a JavaScript client and the registry's
      Lua scripts hold exactly): the server answers a larger id with ``bad_message``.
Added for server push (v1-compatible: a client that ignores unknown frame types keeps working)
    * Pushes to a user (``stickyws.publish``, ``POST /v1/publish``) arrive as ``message`` frames: they
      share the session's ``seq`` counter with handler replies, so ``lastSeq`` replay covers both.
    * ``{"type":"publication","topic":T,"offset":O,"epoch":E,"data":D}``: a publication of a topic the
      session subscribes to. Offsets increase by one per topic within an epoch.
    * ``subscribe`` may carry ``"offset"`` and ``"epoch"`` (a position the client holds): the server
      sends every publication after it, then live ones. Its ``ack`` carries the position live
      publications follow from: ``{"type":"ack","id":N,"topic":T,"offset":O,"epoch":E}``.
    * A resuming client adds ``since=<JSON object {"topic": [offset, "epoch"], ...}>`` (:data:`SINCE_QUERY`)
      for the session's topics: missed publications are sent right after ``connected`` (after the
      ``lastSeq`` replay), then live ones.
    * ``{"type":"unrecoverable","topic":T,"offset":O,"epoch":E}``: the publications after the client's
      position are gone (retention, or the topic's history was lost and its epoch changed); the
      client continues from ``(O, E)``.
    * ``{"type":"gap","fromSeq":A,"toSeq":B}``: messages ``A..B`` of this session are gone (the
      session's outbox could not hold them); never a silent gap.
    * ``{"type":"message","data":D}`` without ``seq``: a handler reply of a server that runs with
      ``inbound_delivery=at_most_once``; it is not numbered, not kept and never replayed (clients
      that number messages ignore it for ``lastSeq``).
    * Close 1013 (:data:`CLOSE_TRY_AGAIN_LATER`) with reason ``slow consumer``: the connection's unsent
      output passed ``max_output_bytes``; the client resumes and gets the rest from its seq and offsets.
Added for deployments (v1-compatible: a client that ignores ``avoid`` reconnects as before)
    * A draining server with a revision adds ``"avoid":"<revision>"`` to its ``reconnect`` frames
      (reason :data:`RECONNECT_DRAINING`). The client drops its load balancer stickiness cookies
      (``AWSALB*``), as after any drain, and adds ``avoid=<revision>`` (:data:`AVOID_QUERY`) to the query
      of its next handshake.
    * A server whose revision equals the handshake's ``avoid``, while the registry shows a live server
      that is not draining and has another revision, accepts the upgrade and at once sends ``reconnect``
      with reason :data:`RECONNECT_SEND_ON`, the same ``avoid`` and ``retryAfterMs`` at most
      :data:`SEND_ON_MAX_RETRY_MS`, then closes with 1012; it sends no ``connected`` and opens no
      session. Otherwise (no other revision live: a scale-in, a stop) it admits the handshake.
    * A client stops adding ``avoid`` after :data:`MAX_AVOID_HOPS` sends-on in a row (no ``connected``
      in between), so a fleet of one revision can never bounce it for ever.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from stickyws.errors import StickywsError
from stickyws.json_codec import dumps as _dumps
from stickyws.json_codec import loads as _loads

SUBPROTOCOL = "stickyws.v1"
BEARER_SUBPROTOCOL_PREFIX = "stickyws.bearer."
RESUME_QUERY = "resume"
RESUME_HEADER = "X-Stickyws-Resume"
LAST_SEQ_QUERY = "lastSeq"
SINCE_QUERY = "since"
#: Longest ``since`` query value the server reads (bytes of JSON); topics beyond it resubscribe by frame.
MAX_SINCE_BYTES = 8192
#: The handshake query naming the revision a client moved by a drain wants to avoid.
AVOID_QUERY = "avoid"
#: Longest revision the server reads from ``avoid`` (a longer one is ignored).
MAX_AVOID_CHARS = 256
#: Sends-on in a row after which a client stops avoiding (and takes any server).
MAX_AVOID_HOPS = 8
#: Largest ``retryAfterMs`` of a send-on: the client goes on at once, with a little jitter.
SEND_ON_MAX_RETRY_MS = 100
#: ``reconnect`` reasons: the server is draining; the server sends the client on to another revision.
RECONNECT_DRAINING = "server_draining"
RECONNECT_SEND_ON = "send_on"
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


class ProtocolError(StickywsError, ValueError):
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
    #: A subscribe's recovery position (``offset`` is ``None`` when the client holds none).
    offset: int | None = None
    epoch: str = ""

    def to_json(self) -> str:
        """The frame as the client sends it."""
        body: dict[str, Any] = {"type": self.type, "id": self.id}
        if self.type == "send":
            body["data"] = self.data
        else:
            body["topic"] = self.topic
            if self.offset is not None:
                body["offset"] = self.offset
                body["epoch"] = self.epoch
        return dumps(body)


def dumps(body: dict[str, Any]) -> str:
    """Compact JSON, as every frame is sent (:mod:`stickyws.json_codec`)."""
    return _dumps(body)


def dumps_value(value: Any) -> str:
    """Compact JSON of any JSON value."""
    return _dumps(value)


def parse_client_frame(text: str | bytes) -> tuple[int, Any] | ClientMessage:
    """Parse one client text frame: a ``send`` as ``(id, data)`` (the hot path builds no object for
    it), a ``subscribe``/``unsubscribe`` as a :class:`ClientMessage`; else :class:`ProtocolError`
    (never anything else)."""
    try:
        body = _loads(text)
    except ValueError:
        raise ProtocolError(ERR_BAD_JSON, "frame is not valid JSON") from None
    if type(body) is not dict:
        raise ProtocolError(ERR_BAD_MESSAGE, "frame must be a JSON object")
    msg_id = body.get("id")
    valid_id = type(msg_id) is int and msg_id > 0
    kind = body.get("type")
    if kind == "send" and valid_id:
        assert isinstance(msg_id, int)
        if "data" not in body:
            raise ProtocolError(ERR_BAD_MESSAGE, "send needs data", msg_id)
        return msg_id, body["data"]
    if kind not in CLIENT_TYPES:
        raise ProtocolError(ERR_UNKNOWN_TYPE, f"unknown type {kind!r}", msg_id if valid_id else None)
    if not valid_id:
        raise ProtocolError(ERR_BAD_MESSAGE, "id must be a positive integer")
    assert isinstance(msg_id, int)
    topic = body.get("topic")
    if not isinstance(topic, str) or not topic or len(topic) > 256:
        raise ProtocolError(ERR_BAD_MESSAGE, "topic must be a non-empty string of at most 256 characters", msg_id)
    offset = body.get("offset")
    if kind == "subscribe" and offset is not None:
        epoch = body.get("epoch", "")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0 or offset > MAX_MESSAGE_ID:
            raise ProtocolError(ERR_BAD_MESSAGE, "offset must be a non-negative integer", msg_id)
        if not isinstance(epoch, str) or len(epoch) > 64:
            raise ProtocolError(ERR_BAD_MESSAGE, "epoch must be a string of at most 64 characters", msg_id)
        return ClientMessage(kind, msg_id, topic=topic, offset=offset, epoch=epoch)
    return ClientMessage(kind, msg_id, topic=topic)


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Parse one client text frame or raise :class:`ProtocolError` (never anything else)."""
    parsed = parse_client_frame(text)
    if isinstance(parsed, ClientMessage):
        return parsed
    return ClientMessage("send", parsed[0], data=parsed[1])


def parse_since(raw: str | None) -> dict[str, tuple[int, str]]:
    """The ``since`` query value as ``{topic: (offset, epoch)}``; malformed entries are left out.

    Never raises: a client with a bad position simply gets live publications from now on.
    """
    if not raw or len(raw) > MAX_SINCE_BYTES:
        return {}
    try:
        body = _loads(raw)
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    out: dict[str, tuple[int, str]] = {}
    for topic, pos in body.items():
        if not (isinstance(pos, list) and len(pos) == 2 and 0 < len(topic) <= 256):
            continue
        offset, epoch = pos
        if (
            isinstance(offset, int)
            and not isinstance(offset, bool)
            and 0 <= offset <= MAX_MESSAGE_ID
            and (isinstance(epoch, str) and len(epoch) <= 64)
        ):
            out[topic] = (offset, epoch)
    return out


def since_query(positions: dict[str, tuple[int, str]]) -> str:
    """The ``since`` query value for ``positions`` (what a resuming client sends)."""
    return dumps({topic: [offset, epoch] for topic, (offset, epoch) in sorted(positions.items())})


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
    if not duplicate:
        return f'{{"type":"ack","id":{msg_id}}}'
    return f'{{"type":"ack","id":{msg_id},"duplicate":true}}'


def subscribe_ack(msg_id: int, topic: str, offset: int, epoch: str, *, duplicate: bool = False) -> str:
    """Acknowledge a subscribe with the position live publications follow from."""
    body: dict[str, Any] = {"type": "ack", "id": msg_id, "topic": topic, "offset": offset, "epoch": epoch}
    if duplicate:
        body["duplicate"] = True
    return dumps(body)


def message_raw(seq: int, data_json: str) -> str:
    """:func:`message` for a payload that is already compact JSON text (no re-encoding)."""
    return f'{{"type":"message","seq":{seq},"data":{data_json}}}'


def message_unnumbered(data_json: str) -> str:
    """A reply that is neither numbered nor kept for replay (``inbound_delivery=at_most_once``)."""
    return f'{{"type":"message","data":{data_json}}}'


def publication_raw(topic: str, offset: int, epoch: str, data_json: str) -> str:
    """A topic publication frame; ``data_json`` is the payload's JSON text."""
    return (
        f'{{"type":"publication","topic":{_dumps(topic)},"offset":{offset},"epoch":{_dumps(epoch)},"data":{data_json}}}'
    )


def unrecoverable(topic: str, offset: int, epoch: str) -> str:
    """The publications of ``topic`` after the client's position are gone; continue from here."""
    return dumps({"type": "unrecoverable", "topic": topic, "offset": offset, "epoch": epoch})


def gap(from_seq: int, to_seq: int) -> str:
    """Messages ``from_seq..to_seq`` of the session are gone."""
    return dumps({"type": "gap", "fromSeq": from_seq, "toSeq": to_seq})


def message(seq: int, data: Any) -> str:
    """A server-to-client application message."""
    return dumps({"type": "message", "seq": seq, "data": data})


def error(code: str, text: str, msg_id: int | None = None) -> str:
    """An error frame; the connection stays open."""
    body: dict[str, Any] = {"type": "error", "code": code, "message": text}
    if msg_id is not None:
        body["id"] = msg_id
    return dumps(body)


def reconnect(reason: str, retry_after_ms: int, *, avoid: str = "") -> str:
    """Tell the client to reconnect after ``retry_after_ms``; ``avoid`` (when not empty): the revision its
    next handshake should avoid."""
    body: dict[str, Any] = {"type": "reconnect", "reason": reason, "retryAfterMs": retry_after_ms}
    if avoid:
        body["avoid"] = avoid
    return dumps(body)


def parse_avoid(raw: str | None) -> str:
    """The ``avoid`` query value as a revision, or "" when absent, empty or longer than :data:`MAX_AVOID_CHARS`."""
    if not raw or len(raw) > MAX_AVOID_CHARS:
        return ""
    return raw
