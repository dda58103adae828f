"""What the client does after each way a connection can end. Pure.

=========================================  ==========================================================
event                                      decision
=========================================  ==========================================================
close 1001, 1006, 1011, 1012, 1013         reconnect with backoff (``protocol.RECONNECT_CLOSE_CODES``)
close 4001 (taken over), 1008, 1000, ...   stop: another connection replaced this one, the server
                                           rejected the client, or it ended the session on purpose
``{"type":"reconnect","retryAfterMs":T}``  close, wait at least T (plus jitter), reconnect; the
                                           failure count starts again (the server asked for it)
handshake 503 / 502 / 504 / 429            retry with backoff, at least ``Retry-After``
handshake 409 (user connected elsewhere)   retry with backoff: the other connection goes away
handshake 401 / 403 / 404 / 426 / other    stop: the token, origin or URL is wrong; retrying
                                           cannot fix it
connect error or timeout                   retry with backoff
=========================================  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stickyws import protocol

RETRY_STATUSES = frozenset({409, 429, 502, 503, 504})

_CLOSE_NAMES = {
    1000: "normal",
    1001: "going away",
    1003: "unsupported data",
    1006: "abnormal closure",
    1008: "policy violation",
    1009: "message too big",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    protocol.CLOSE_TAKEN_OVER: "taken over",
}


@dataclass(frozen=True)
class Decision:
    """Whether to reconnect, why (one readable phrase), and the server's hint in seconds."""

    reconnect: bool
    reason: str
    hint_s: float | None = None
    #: True when the failure count restarts (the server asked for the reconnect).
    reset_attempts: bool = False


def close_name(code: int | None) -> str:
    """``1012 (service restart)``-style text for a close code (``None`` is an abnormal closure)."""
    if code is None:
        code = protocol.CLOSE_ABNORMAL
    return f"{code} ({_CLOSE_NAMES.get(code, 'application')})"


def on_close(code: int | None) -> Decision:
    """Decision after the connection closed with ``code`` (``None``: no close frame, i.e. 1006)."""
    effective = protocol.CLOSE_ABNORMAL if code is None else code
    reason = f"closed {close_name(effective)}"
    return Decision(effective in protocol.RECONNECT_CLOSE_CODES, reason)


def on_reconnect_frame(frame: dict[str, Any]) -> Decision:
    """Decision after a ``{"type":"reconnect"}`` frame: always reconnect, after ``retryAfterMs``."""
    raw = frame.get("retryAfterMs")
    hint = max(0.0, float(raw) / 1000) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
    return Decision(True, f"server asked to reconnect ({frame.get('reason', 'no reason')})", hint, reset_attempts=True)


def on_handshake_status(status: int, retry_after_s: float | None) -> Decision:
    """Decision after the upgrade was answered with HTTP ``status`` instead of 101."""
    if status in RETRY_STATUSES:
        return Decision(True, f"handshake answered {status}", retry_after_s)
    return Decision(False, f"handshake answered {status}: check the token, Origin and URL")


def on_connect_error(error: str) -> Decision:
    """Decision after the TCP/TLS connection or the handshake could not complete (refused, timeout)."""
    return Decision(True, f"could not connect: {error}")
