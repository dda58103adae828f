"""The plain answers on ``/ws`` without an upgrade: CORS headers, ``OPTIONS /ws`` and ``GET /ws?preflight=1``.

Called once per such request by :class:`~stickyws.server.ws_connection.WebSocketConnection`, never per frame.
"""

from __future__ import annotations

from stickyws import protocol
from stickyws.server import http_head
from stickyws.server.core import HandshakeRequest, ServerCore
from stickyws.server.http_head import RequestHead

#: Query flag of the pre-flight: ``GET /ws?preflight=1`` without an upgrade answers what the upgrade would.
PREFLIGHT_QUERY = "preflight"


def cors_headers(head: RequestHead) -> dict[str, str]:
    """CORS headers echoing the request's ``Origin`` (none without one).

    Any origin may read a pre-flight answer: the origin is checked before the token, so a refused
    origin learns only that it is refused (or that the server is draining or full), never whether a
    token is valid.
    """
    origin = head.headers.get("Origin")
    if not origin:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": "Retry-After",
        "Vary": "Origin",
    }


def cors_preflight_headers(head: RequestHead) -> dict[str, str]:
    """``OPTIONS /ws``: the CORS pre-flight a cross-origin ``fetch`` sends before a pre-flight GET with a token."""
    return {
        **cors_headers(head),
        "Access-Control-Allow-Methods": "GET",
        "Access-Control-Allow-Headers": f"Authorization, {protocol.RESUME_HEADER}",
        "Access-Control-Max-Age": "600",
    }


def preflight_response(core: ServerCore, head: RequestHead, remote: str | None) -> bytes:
    """``GET /ws?preflight=1`` without an upgrade: 200 ``{"ok": true}`` or the refusal the upgrade would get."""
    offered = head.headers.tokens("Sec-WebSocket-Protocol")
    rejection = core.preflight(HandshakeRequest(head.query, head.headers, offered, remote))
    headers = {**cors_headers(head), "Cache-Control": "no-store"}
    if rejection is None:
        return http_head.json_response(200, {"ok": True}, headers=headers)
    if rejection.retry_after_s is not None:
        headers["Retry-After"] = str(rejection.retry_after_s)
    return http_head.response(rejection.status, rejection.body(), headers=headers)
