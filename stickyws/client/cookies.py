"""A cookie jar per endpoint, values kept byte for byte. Pure (the clock is injectable).

The load balancer's stickiness cookie (``AWSALB``, ``AWSALBCORS``, the ``AWSALBAPP-*`` cookies of
``app_cookie`` mode) and the application's own cookie are opaque: the ALB encrypts its value, the
local twin's is readable, and neither may be parsed or changed. The jar stores every cookie an
endpoint sets, exactly as sent, and sends them all back on every handshake to that endpoint,
which is what makes a reconnect land on the same task.

An endpoint is ``scheme://host:port`` with ``ws``/``http`` and ``wss``/``https`` treated alike, so a
cookie set on ``wss://example.com/ws`` is sent to ``wss://example.com:443/ws?resume=...`` too.

After a drain's ``reconnect`` frame the client drops the load balancer's stickiness cookies
(:meth:`CookieJar.drop_sticky`: every name starting with :data:`STICKY_COOKIE_PREFIX`, i.e. ``AWSALB``,
``AWSALBCORS``, ``AWSALBAPP-*``, ``AWSALBTG*``), so the next handshake is balanced afresh instead of
following a cookie that names the server it is leaving (or one that sent it on).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

#: Every cookie the ALB sets for stickiness starts with this (``AWSALB``, ``AWSALBAPP-0``, ``AWSALBTG`` ...).
STICKY_COOKIE_PREFIX = "AWSALB"
_SECURE = {"wss": "https", "https": "https", "ws": "http", "http": "http"}
_DEFAULT_PORT = {"https": 443, "http": 80}


def endpoint_of(url: str) -> str:
    """The jar key of ``url``: ``http(s)://host:port`` (default ports made explicit)."""
    parts = urlsplit(url)
    scheme = _SECURE.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ValueError(f"{url!r} is not a ws://, wss://, http:// or https:// URL")
    port = parts.port or _DEFAULT_PORT[scheme]
    return f"{scheme}://{parts.hostname.lower()}:{port}"


@dataclass(frozen=True)
class Cookie:
    """One stored cookie: ``value`` exactly as the server sent it; ``expires_at`` epoch seconds or ``None``."""

    name: str
    value: str
    expires_at: float | None = None


def parse_set_cookie(header: str, now_s: float) -> Cookie | None:
    """The cookie a ``Set-Cookie`` header sets (``expires_at`` in the past means: delete it).

    Only ``Max-Age`` (preferred) and ``Expires`` are read; ``None`` for a header with no name.
    """
    first, *attrs = header.split(";")
    name, sep, value = first.partition("=")
    name = name.strip()
    if not sep or not name:
        return None
    expires_at: float | None = None
    max_age: float | None = None
    for attr in attrs:
        key, _, val = attr.strip().partition("=")
        key = key.strip().lower()
        if key == "max-age":
            try:
                max_age = float(int(val.strip()))
            except ValueError:
                continue
        elif key == "expires" and expires_at is None:
            try:
                expires_at = email.utils.parsedate_to_datetime(val.strip()).timestamp()
            except (TypeError, ValueError):
                continue
    if max_age is not None:
        expires_at = now_s + max_age
    return Cookie(name, value.strip(), expires_at)


class CookieJar:
    """Cookies per endpoint; see the module doc. ``clock`` returns epoch seconds."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._jar: dict[str, dict[str, Cookie]] = {}

    def update(self, url: str, set_cookie_headers: Iterable[str]) -> list[str]:
        """Store what the ``Set-Cookie`` headers of a response from ``url`` set; returns the names changed."""
        now = self._clock()
        store = self._jar.setdefault(endpoint_of(url), {})
        changed: list[str] = []
        for header in set_cookie_headers:
            cookie = parse_set_cookie(header, now)
            if cookie is None:
                continue
            if cookie.expires_at is not None and cookie.expires_at <= now:
                if store.pop(cookie.name, None) is not None:
                    changed.append(cookie.name)
                continue
            if store.get(cookie.name) != cookie:
                changed.append(cookie.name)
            store[cookie.name] = cookie
        return changed

    def cookies(self, url: str) -> dict[str, str]:
        """``{name: value}`` of the unexpired cookies for ``url``'s endpoint."""
        now = self._clock()
        store = self._jar.get(endpoint_of(url), {})
        for name in [n for n, c in store.items() if c.expires_at is not None and c.expires_at <= now]:
            del store[name]
        return {name: c.value for name, c in store.items()}

    def header(self, url: str) -> str | None:
        """The ``Cookie`` request header for ``url``, or ``None`` when the jar holds nothing for it."""
        items = self.cookies(url)
        return "; ".join(f"{k}={v}" for k, v in items.items()) or None

    def drop_sticky(self, url: str) -> list[str]:
        """Forget the load balancer's stickiness cookies of ``url``'s endpoint; returns the names dropped."""
        store = self._jar.get(endpoint_of(url), {})
        dropped = sorted(name for name in store if name.startswith(STICKY_COOKIE_PREFIX))
        for name in dropped:
            del store[name]
        return dropped

    def clear(self, url: str | None = None) -> None:
        """Forget the cookies of ``url``'s endpoint, or of every endpoint."""
        if url is None:
            self._jar.clear()
        else:
            self._jar.pop(endpoint_of(url), None)
