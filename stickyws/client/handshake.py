"""The reference client's handshake helpers: the URL's query, the 101 answer's headers, and the reasons to stop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from stickyws import protocol

if TYPE_CHECKING:
    import aiohttp

#: Close code sent to a server that does not speak ``stickyws.v1`` (RFC 6455 protocol error).
CLOSE_PROTOCOL_ERROR = 1002


def with_query(url: str, params: dict[str, str]) -> str:
    """``url`` with ``params`` set in its query (existing keys replaced)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


def not_stickyws_reason(found: str, timeout_s: float) -> str:
    """The stop reason for a server that does not speak ``stickyws.v1``: what it did (``found``), what was
    expected, and what to check."""
    return (
        f"the server does not speak {protocol.SUBPROTOCOL}: {found}; expected the {protocol.SUBPROTOCOL} "
        f"subprotocol in the upgrade answer and a `connected` frame within {timeout_s:g} s. Check that the URL "
        "is a stickyws server's WebSocket endpoint (`stickyws serve` listens on /ws)"
    )


#: Added to the reason of a handshake answered 400: a server that refuses the subprotocol answers so.
HANDSHAKE_400_HINT = (
    f"; a server that does not offer the {protocol.SUBPROTOCOL} subprotocol answers 400 too: "
    "check that a stickyws server answers at this URL"
)


def handshake_headers(ws: aiohttp.ClientWebSocketResponse) -> Any:
    """Headers of the 101 answer (``Set-Cookie``...): aiohttp keeps that response only privately."""
    response = getattr(ws, "_response", None)
    return response.headers if response is not None else {}
