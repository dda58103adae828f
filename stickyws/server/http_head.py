"""The HTTP/1.1 request head a client sends before the upgrade, and the server's plain responses.

No I/O. :func:`parse_head` reads one request head under fixed limits and raises :class:`BadRequest`
(with the status to answer: 400, 414 or 431) for anything it will not serve; :func:`response` and
:func:`switching_protocols` build what goes back. Plain responses always close the connection.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

from stickyws import json_codec
from stickyws.errors import ReferenceServerError

#: Longest request line (aiohttp's and nginx's default line limit).
MAX_REQUEST_LINE_BYTES = 8190
#: Longest header line.
MAX_HEADER_LINE_BYTES = 8190
#: Whole head (request line and headers).
MAX_HEAD_BYTES = 32 * 1024
#: Most headers in one request.
MAX_HEADERS = 100
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class BadRequest(ReferenceServerError):
    """A request head this server will not serve: answer ``status`` and close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Headers(Mapping[str, str]):
    """Request headers, looked up without regard to case; a repeated header's values joined by ``, ``."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for name, value in (items or {}).items():
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        key = name.lower()
        held = self._items.get(key)
        self._items[key] = (name, value) if held is None else (held[0], f"{held[1]}, {value}")

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def tokens(self, name: str) -> tuple[str, ...]:
        """The comma-separated tokens of header ``name`` (stripped, empty ones dropped)."""
        return tuple(t.strip() for t in self.get(name, "").split(",") if t.strip())


class RequestHead:
    """One parsed request head (read-only; a plain class: a dataclass's generated ``__init__`` stays
    interpreted in the compiled build)."""

    def __init__(self, method: str, path: str, query: Mapping[str, str], version: str, headers: Headers) -> None:
        self.method: Final = method
        self.path: Final = path
        self.query: Final = query
        self.version: Final = version
        self.headers: Final = headers

    @property
    def wants_upgrade(self) -> bool:
        """``Upgrade: websocket`` is asked for."""
        return "websocket" in (t.lower() for t in self.headers.tokens("Upgrade"))


def head_end(buf: bytes) -> int:
    """Index just past the blank line that ends the head in ``buf``, or -1 when it has not arrived;
    raises :class:`BadRequest` when the head already exceeds the limits."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        line_end = buf.find(b"\r\n")
        if line_end < 0 and len(buf) > MAX_REQUEST_LINE_BYTES:
            raise BadRequest(414, f"request line longer than {MAX_REQUEST_LINE_BYTES} bytes")
        if len(buf) > MAX_HEAD_BYTES:
            raise BadRequest(431, f"request head longer than {MAX_HEAD_BYTES} bytes")
        return -1
    if end + 4 > MAX_HEAD_BYTES:
        raise BadRequest(431, f"request head longer than {MAX_HEAD_BYTES} bytes")
    return end + 4


def parse_head(raw: bytes) -> RequestHead:
    """The request head ``raw`` (up to and including the blank line); raises :class:`BadRequest`."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise BadRequest(400, "request head is not text") from None
    lines = text[:-4].split("\r\n")
    request_line = lines[0]
    if len(request_line) > MAX_REQUEST_LINE_BYTES:
        raise BadRequest(414, f"request line longer than {MAX_REQUEST_LINE_BYTES} bytes")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _TOKEN_CHARS:
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(400 if not version.startswith("HTTP/") else 505, f"unsupported HTTP version {version[:16]!r}")
    if not target.startswith("/"):
        raise BadRequest(400, "request target must be a path")
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest(431, f"more than {MAX_HEADERS} headers")
    headers = Headers()
    for line in lines[1:]:
        if len(line) > MAX_HEADER_LINE_BYTES:
            raise BadRequest(431, f"header line longer than {MAX_HEADER_LINE_BYTES} bytes")
        name, sep, value = line.partition(":")
        if not sep or not name or not set(name) <= _TOKEN_CHARS:
            raise BadRequest(400, "malformed header line")
        value = value.strip(" \t")
        if any(c in value for c in "\r\n\x00"):
            raise BadRequest(400, "malformed header value")
        headers.add(name, value)
    if "Transfer-Encoding" in headers or headers.get("Content-Length", "0").strip() not in ("", "0"):
        raise BadRequest(400, "request bodies are not accepted here")
    split = urlsplit(target)
    query: dict[str, str] = {}
    for key, value in parse_qsl(split.query, keep_blank_values=True):
        query.setdefault(key, value)  # the first value of a repeated parameter, as aiohttp's query.get
    return RequestHead(method, unquote(split.path), query, version, headers)


def accept_key(key: str) -> str | None:
    """``Sec-WebSocket-Accept`` for the client's ``Sec-WebSocket-Key``; ``None`` for an invalid key."""
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except ValueError:
        return None
    return base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()


def _head(status: int, headers: Mapping[str, str]) -> list[str]:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return [f"HTTP/1.1 {status} {phrase}", *(f"{k}: {v}" for k, v in headers.items())]


def response(
    status: int,
    body: bytes | str = b"",
    *,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """A complete response that closes the connection."""
    data = body.encode() if isinstance(body, str) else body
    all_headers = {**(headers or {}), "Content-Length": str(len(data)), "Connection": "close"}
    if data:
        all_headers.setdefault("Content-Type", content_type)
    lines = _head(status, all_headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def json_response(status: int, value: object, *, headers: Mapping[str, str] | None = None) -> bytes:
    """:func:`response` with ``value`` as a JSON body."""
    body = json_codec.dumps(value)
    return response(status, body, content_type="application/json; charset=utf-8", headers=headers)


def switching_protocols(accept: str, headers: Mapping[str, str]) -> bytes:
    """The 101 response that completes an upgrade."""
    lines = _head(101, {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": accept, **headers})
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
