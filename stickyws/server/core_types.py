"""What the WebSocket adapter and the server core exchange, and what the core's parts share.

The adapter (:mod:`stickyws.server.ws_adapter`) turns an upgrade request into a
:class:`HandshakeRequest`, gets an :class:`Admission` or a :class:`Rejection` back, and hands the core
a :class:`Transport` for the socket; the core keeps a :class:`Connection` per open socket. All of it is
re-exported by :mod:`stickyws.server.core`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from stickyws import protocol
from stickyws.registry.records import SessionRecord
from stickyws.server.delivery import SeqCursor, TopicCursor
from stickyws.server.session import SessionState

#: ``Retry-After`` (seconds) on 503 answers.
RETRY_AFTER_S = 1
#: Hosts a browser elsewhere cannot reach: no startup warning about ``allowed_origins`` for them.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

#: Runs a coroutine in the background; the core keeps the task and cancels it at close.
Spawn = Callable[[Coroutine[Any, Any, Any]], None]


def reraise_if_cancelling() -> None:
    """Raise ``CancelledError`` if this task was cancelled (a library turned the cancellation into an error)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def origin_refusal(origin: str | None) -> str:
    """The message of a 403 ``origin_not_allowed``: names the origin and the setting that admits it."""
    return (
        f"origin {origin!r} is not allowed: add it to the allowed_origins setting "
        f"(STICKYWS_ALLOWED_ORIGINS={origin}, comma-separated; * allows any origin)"
    )


def origin_warning(allowed_origins: Sequence[str], host: str) -> str | None:
    """The startup warning for a server browsers can reach but no browser may use, else ``None``.

    Browsers always send ``Origin``; with ``allowed_origins`` empty every browser handshake is
    refused with 403. Loopback binds (``127.0.0.0/8``, ``::1``, ``localhost``) get no warning.
    """
    if allowed_origins or host in LOOPBACK_HOSTS or host.startswith("127."):
        return None
    return (
        f"allowed_origins is empty on a server bound to {host}: every browser handshake (browsers always "
        "send Origin) is refused with 403 origin_not_allowed; set STICKYWS_ALLOWED_ORIGINS to your pages' "
        "origins, e.g. https://app.example.com (comma-separated)"
    )


@dataclass
class RegistryBacklog:
    """What the registry has not been told yet. Any part that finds the registry away marks it; the
    heartbeat (:class:`stickyws.server.upkeep.Upkeep`) works it off once the registry answers again."""

    #: Re-register every connection and re-read what was missed at the next beat.
    needs_reconcile: bool = False
    #: Users whose route release failed (released at the next reconcile unless they came back).
    pending_releases: set[str] = field(default_factory=set)


class ServerState(enum.Enum):
    """Where the server is in its life."""

    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"
    CLOSED = "closed"


class HandshakeRequest:
    """What the core needs from an upgrade request (``headers`` must be case-insensitive); read-only.

    A plain class, as every class here built per handshake: a dataclass's generated ``__init__`` runs
    interpreted in the compiled build (docs/server.md, *The compiled build*).
    """

    def __init__(
        self,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        subprotocols: tuple[str, ...] = (),
        remote: str | None = None,
    ) -> None:
        self.query: Final = query
        self.headers: Final = headers
        self.subprotocols: Final = subprotocols
        self.remote: Final = remote


@dataclass(frozen=True)
class Rejection:
    """A refused handshake: HTTP ``status`` with JSON body ``{"error": code, "message": ...}``."""

    status: int
    code: str
    message: str
    retry_after_s: int | None = None

    def body(self) -> str:
        """The JSON body."""
        return protocol.dumps({"error": self.code, "message": self.message})


class Admission:
    """An accepted handshake, waiting for the upgrade to complete (read-only).

    ``last_seq``: the client's last seen server seq (``lastSeq`` query) on resume: later outbox messages
    are replayed. ``since``: the client's topic positions (``since`` query) on resume.
    ``replay_confirmed``: false when the replayed outbox is not confirmed on the replicas yet: it is read
    again, not shown. ``send_on`` not empty: a send-on (:mod:`stickyws.server.send_on`), the revision the
    client avoids; the connection gets ``reconnect`` (reason ``send_on``) and a close, no session
    (``session`` is a placeholder, not stored).
    """

    def __init__(
        self,
        user_id: str,
        session: SessionRecord,
        resumed: bool,
        previous_owner: str | None,
        remote: str | None,
        last_seq: int | None = None,
        since: Mapping[str, tuple[int, str]] | None = None,
        replay_confirmed: bool = True,
        send_on: str = "",
    ) -> None:
        self.user_id: Final = user_id
        self.session: Final = session
        self.resumed: Final = resumed
        self.previous_owner: Final = previous_owner
        self.remote: Final = remote
        self.last_seq: Final = last_seq
        self.since: Final[Mapping[str, tuple[int, str]]] = {} if since is None else since
        self.replay_confirmed: Final = replay_confirmed
        self.send_on: Final = send_on


class SharedFrame:
    """One text frame written to many connections: ``text``, and ``wire``, its encoding, which the
    first transport that needs it fills in and the others reuse."""

    __slots__ = ("text", "wire")

    def __init__(self, text: str) -> None:
        self.text = text
        self.wire: bytes | None = None


class Transport(Protocol):
    """One open WebSocket as the core sees it."""

    def write(self, text: str) -> int:
        """Queue one text frame without waiting; returns the bytes still unsent on this connection
        (raises ``ConnectionError`` when the socket is gone). Frames go out in call order."""
        ...

    def write_shared(self, frame: SharedFrame) -> int:
        """:meth:`write` for one frame sent to many connections (a publication): the transport may
        encode it once into ``frame.wire`` and hand the same bytes to every socket."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close with ``code`` (idempotent)."""
        ...


class Connection:
    """A live connection: its transport and its session mirror (equal only to itself)."""

    def __init__(
        self,
        conn_id: str,
        session: SessionState,
        transport: Transport,
        remote: str | None,
        opened_at: float,
        route_refreshed_at: float,
    ) -> None:
        self.conn_id: Final = conn_id
        self.session = session
        self.transport: Final = transport
        self.remote: Final = remote
        self.opened_at: Final = opened_at
        self.route_refreshed_at = route_refreshed_at
        self.closing = False
        #: The session's messages written to this socket (see :mod:`stickyws.server.delivery`).
        self.cursor = SeqCursor()
        #: Position per subscribed topic.
        self.topics: dict[str, TopicCursor] = {}
        #: True while a read of missing messages is in flight.
        self.filling = False
        #: Highest seq the registry was seen to hold that this socket still lacks (read again until written).
        self.fill_through = 0

    @property
    def user_id(self) -> str:
        """The authenticated user."""
        return self.session.user_id

    async def close(self, code: int, reason: str) -> None:
        """Mark the connection ``closing`` (nothing more is written to it) and close its socket with
        ``code`` (once: a second call does nothing; a socket already gone is no error)."""
        if self.closing:
            return
        self.closing = True
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
            await self.transport.close(code, reason)
