"""One pipelined Redis connection for the registry's hot path (one primary only).

:class:`RedisLane` writes every command queued in one event-loop iteration in one socket write and
resolves the replies in order (RESP is FIFO on a connection): what ioredis calls auto-pipelining. It
packs with ``hiredis.pack_command`` and parses with ``hiredis.Reader``, and it keeps no per-call
timer: one watchdog per connection fails everything in flight with :class:`asyncio.TimeoutError` when
Redis has not answered for ``reply_timeout_s``. Measured against redis-py's pipeline on the same
commits (bench/findings.md, *The fast path*), which spends most of the per-message cost in packing,
the pool and a ``SCRIPT EXISTS`` round trip per batch.

Contracts:

* :meth:`RedisLane.execute` returns the reply (bytes, int, list, or ``None``), or raises
  :class:`LaneUnavailable` (a ``ConnectionError``: the connection failed, was lost with the command in
  flight, or Redis answered ``READONLY``/``LOADING``/``MASTERDOWN``), :class:`asyncio.TimeoutError`, or
  :class:`LaneReplyError` (an error reply, e.g. a script error).
* A command that was never written is retried on a new connection; one in flight when the connection
  drops is failed, never resent (the caller decides: the registry's commits are idempotent by message id).
* :meth:`RedisLane.evalsha` runs a :class:`LaneScript` by its SHA and falls back to ``EVAL`` (which
  caches it again) when Redis answers ``NOSCRIPT``, e.g. after a restart.
* ``rediss://`` URLs use TLS; credentials come from the URL or a redis-py ``CredentialProvider``.

Pub/sub on a connection of the same kind is :class:`stickyws.registry.redis_listener.RedisSubscriber`;
the lanes of a cluster, one per primary, are :class:`stickyws.registry.cluster_lanes.ClusterLanes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import re
import socket
import ssl
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlparse

import hiredis

from stickyws.registry.errors import LaneReplyError, LaneUnavailable

__all__ = ["LaneReplyError", "LaneScript", "LaneUnavailable", "RedisLane", "pack_command"]

log = logging.getLogger("stickyws.server")

#: ``hiredis.pack_command`` typed for any tuple of parts (its stub names a one-element tuple).
pack_command: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command

#: Error replies that mean "this connection cannot serve the registry now" (a replica after a failover,
#: a primary still loading its data): the connection is dropped and the next call reconnects.
_UNAVAILABLE_PREFIXES = ("READONLY", "LOADING", "MASTERDOWN")
#: How long a lane trusts the replica count it read (``INFO replication``).
REPLICAS_REFRESH_S = 5.0


class LaneScript:
    """A Lua script known by its SHA1, as ``EVALSHA`` needs it."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest().encode()


@dataclasses.dataclass(frozen=True)
class _Endpoint:
    """Where and how a lane connects."""

    scheme: str
    host: str
    port: int
    path: str
    db: int
    username: str | None
    password: str | None
    verify_tls: bool
    credential_provider: Any
    connect_timeout_s: float
    reply_timeout_s: float
    keepalive_options: tuple[tuple[int, int], ...]


class _Protocol(asyncio.Protocol):
    __slots__ = ("_lane", "_reader")

    def __init__(self, lane: RedisLane) -> None:
        self._lane = lane
        self._reader = hiredis.Reader()

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        lane = self._lane
        reply = reader.gets()
        while reply is not False:
            lane._on_reply(reply)
            reply = reader.gets()
        lane._progress_at = lane._loop_time()  # Redis is answering: the watchdog measures silence from here

    def connection_lost(self, exc: Exception | None) -> None:
        self._lane._on_lost(self)


class RedisLane:
    """Commands to one Redis primary over one auto-pipelined connection (see the module docstring).

    ``url``: ``redis://``, ``rediss://`` (TLS) or ``unix://``, with optional ``user:password@`` and ``/db``.
    ``credential_provider``: an object with ``get_credentials_async()`` or ``get_credentials()`` returning
    ``(password,)`` or ``(username, password)`` (redis-py's protocol), asked at every connect.
    ``connect_timeout_s``: for TCP, TLS and authentication together. ``reply_timeout_s``: how long Redis may
    stay silent while commands are in flight. ``keepalive_options``: TCP keepalive socket options.
    """

    def __init__(
        self,
        url: str,
        *,
        credential_provider: Any = None,
        connect_timeout_s: float = 1.0,
        reply_timeout_s: float = 2.0,
        keepalive_options: Mapping[int, int] | None = None,
        _endpoint: _Endpoint | None = None,
    ) -> None:
        if _endpoint is not None:  # :meth:`at`: another node of the same deployment
            self._ep = _endpoint
            self._init_state()
            return
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"registry URL must start with redis://, rediss:// or unix://, not {url!r}")
        db = parsed.path.lstrip("/") if parsed.scheme != "unix" else ""
        self._ep = _Endpoint(
            scheme=parsed.scheme,
            host=parsed.hostname or "localhost",
            port=parsed.port or 6379,
            path=parsed.path if parsed.scheme == "unix" else "",
            db=int(db) if db else 0,
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            verify_tls="ssl_cert_reqs=none" not in (parsed.query or ""),
            credential_provider=credential_provider,
            connect_timeout_s=connect_timeout_s,
            reply_timeout_s=reply_timeout_s,
            keepalive_options=tuple((keepalive_options or {}).items()),
        )
        self._init_state()

    def at(self, host: str, port: int) -> RedisLane:
        """A new lane to ``host:port`` with this one's TLS, credentials and timeouts (a cluster's other
        nodes; database 0, the only one a cluster has)."""
        return RedisLane("", _endpoint=dataclasses.replace(self._ep, host=host, port=port, path="", db=0))

    def _init_state(self) -> None:
        self._reply_timeout_s = self._ep.reply_timeout_s
        self._transport: asyncio.Transport | None = None
        self._opening: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[None] | None = None
        #: The loop of the connection's transport (see :meth:`_running_loop`).
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Packed commands not yet written, and their futures (same order).
        self._out: list[bytes] = []
        self._queued: list[asyncio.Future[Any]] = []
        #: Futures of written commands, oldest first (replies arrive in this order).
        self._pending: deque[asyncio.Future[Any]] = deque()
        #: Script calls queued or in flight: what to send as ``EVAL`` if Redis answers ``NOSCRIPT``.
        self._scripts: dict[asyncio.Future[Any], tuple[LaneScript, Sequence[str], Sequence[str | int]]] = {}
        self._flush_scheduled = False
        self._progress_at = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._timed_out = False
        self._closed = False
        #: Counts the connections this lane has opened: a ``WAIT`` covers the writes of its own connection
        #: only, so a caller compares it before and after.
        self.generation = 0
        #: The ``WAIT`` queued for the next write per replica count, shared by every caller until it is written.
        self._barriers: dict[int, asyncio.Future[Any]] = {}
        #: Replicas of the connected primary (``None``: not asked on this connection yet), lowered by a
        #: :meth:`wait_replicated` that fewer confirmed; and as ``INFO replication`` counted them.
        self._replicas: int | None = None
        self._attached = 0
        self._attached_stale = False
        self._replicas_of = -1
        self._replicas_until = 0.0

    # ------------------------------------------------------------------ calls

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the connection lives on, else the running one (on Python 3.11 every
        ``asyncio.get_running_loop()`` makes a ``getpid`` system call: 4 % of a commit's CPU)."""
        loop = self._loop
        if loop is None or self._transport is None:
            loop = asyncio.get_running_loop()
        return loop

    def _loop_time(self) -> float:
        return self._running_loop().time()

    def execute(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command; the future resolves with its reply (see the module docstring)."""
        return self.execute_packed(pack_command(args))

    def execute_packed(self, packed: bytes) -> asyncio.Future[Any]:
        """:meth:`execute` of one command already packed as ``hiredis.pack_command`` packs it."""
        fut: asyncio.Future[Any] = self._running_loop().create_future()
        if self._closed:
            fut.set_exception(LaneUnavailable("the registry lane is closed"))
            return fut
        self._queued.append(fut)
        self._enqueue(packed)
        return fut

    def _enqueue(self, packed: bytes) -> None:
        """Queue packed bytes for the write at the end of this loop iteration."""
        self._out.append(packed)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._running_loop().call_soon(self._flush)

    def evalsha(self, script: LaneScript, keys: Sequence[str], args: Sequence[str | int]) -> asyncio.Future[Any]:
        """Run ``script`` on ``keys`` and ``args``; sent again once as ``EVAL`` when Redis answers
        ``NOSCRIPT`` (no longer has it cached). A future, not a coroutine: a commit per message awaits
        one coroutine fewer."""
        return self.evalsha_packed(script, pack_command((b"EVALSHA", script.sha, len(keys), *keys, *args)), keys, args)

    def evalsha_packed(
        self, script: LaneScript, packed: bytes, keys: Sequence[str], args: Sequence[str | int]
    ) -> asyncio.Future[Any]:
        """:meth:`evalsha` of a command the caller packed: ``packed`` is ``EVALSHA``, the SHA, the key count,
        ``keys`` and ``args`` as ``hiredis.pack_command`` packs them (a commit packs the arguments that stay
        the same for a session once); ``keys`` and ``args`` build the ``EVAL`` after a ``NOSCRIPT``."""
        fut = self.execute_packed(packed)
        if not fut.done():
            self._scripts[fut] = (script, keys, args)
        return fut

    async def replicas(self, *, strict: bool = False) -> int:
        """How many replicas the primary behind this connection has: ``INFO replication``, read again
        on a new connection and every :data:`REPLICAS_REFRESH_S` (a replica added or back is waited for
        from then on); lowered meanwhile by :meth:`wait_replicated` when they do not answer, unless
        ``strict`` (then: the replicas attached to the primary, answering or not)."""
        now = self._loop_time()
        if self._replicas is None or self._replicas_of != self.generation or now >= self._replicas_until:
            self._replicas_until = now + REPLICAS_REFRESH_S
            self._attached_stale = False
            self._attached = await self._read_attached()
            self._replicas, self._replicas_of = self._attached, self.generation
        elif strict and self._attached_stale:
            self._attached_stale = False
            self._attached = await self._read_attached()
            self._replicas = min(self._replicas, self._attached)
        return self._attached if strict else self._replicas

    async def _read_attached(self) -> int:
        """``connected_slaves`` of ``INFO replication`` (0 when INFO is refused, with one warning per read)."""
        try:
            info = await self.execute(b"INFO", b"replication")
        except LaneReplyError as exc:  # e.g. an ACL without INFO: nothing to wait for that can be known
            log.warning("cannot read INFO replication (%s): acknowledgements do not wait for replicas", exc)
            info = b""
        found = re.search(rb"connected_slaves:(\d+)", info or b"")
        return int(found.group(1)) if found else 0

    def nothing_to_wait_for(self) -> bool:
        """True when a non-strict :meth:`wait_replicated` would return 0 without a round trip (the primary
        has no replica, or none answered, and the count is still current): the commit's fast path."""
        return (
            self._replicas == 0
            and self._replicas_of == self.generation
            and self._running_loop().time() < self._replicas_until
        )

    async def wait_replicated(self, replicas: int, timeout_ms: int, *, strict: bool = False) -> int:
        """``WAIT`` until ``replicas`` replicas (at most as many as the primary has) hold every write
        this connection made so far; one ``WAIT`` serves all callers of one loop iteration. Returns
        how many confirmed; past ``timeout_ms`` with fewer, later calls wait for that many only (a
        replica that is down must not slow every write) until the count is read again. ``strict``
        (pushes, catch-up reads): wait for every attached replica up to ``replicas`` even after a timeout,
        and read the count again at the next call (a replica that is gone, not just silent, is then no
        longer waited for). Raises :class:`LaneUnavailable` when the connection changed meanwhile (the
        writes' fate is unknown)."""
        want = min(replicas, await self.replicas(strict=strict))
        if want <= 0:
            return 0
        generation = self.generation
        barrier = self._barriers.get(want)
        if barrier is None:
            barrier = self._barriers[want] = self.execute(b"WAIT", want, timeout_ms)
        acked = int(await barrier)
        if self.generation != generation:
            raise LaneUnavailable("the registry connection changed before its writes were confirmed")
        if acked < want and self._replicas_of == generation:
            self._replicas = min(acked, self._replicas or 0)
            if strict:
                self._attached_stale = True  # a replica that is gone, not silent, is no longer waited for
        return acked

    async def evalsha_with_lane(
        self, script: LaneScript, keys: Sequence[str], args: Sequence[str | int]
    ) -> tuple[Any, RedisLane]:
        """:meth:`evalsha`, and the lane that ran it (this one; a cluster's lanes answer with the node's)."""
        return await self.evalsha(script, keys, args), self

    async def close(self) -> None:
        """Fail what is queued or in flight with :class:`LaneUnavailable` and close the connection. Idempotent."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting
        self._fail_queued(LaneUnavailable("the registry lane is closed"))
        if self._transport is not None:
            self._transport.close()
        self._fail_pending(LaneUnavailable("the registry lane is closed"))

    # ------------------------------------------------------------------ writing

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out:
            return
        transport = self._transport
        if transport is None:
            if self._connecting is None and not self._closed:
                self._connecting = asyncio.ensure_future(self._connect())
            return  # written once connected
        if not self._pending:
            self._progress_at = self._running_loop().time()
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        if self._barriers:
            self._barriers = {}
        self._pending.extend(self._queued)
        self._out.clear()
        self._queued.clear()
        transport.write(data)
        if self._watchdog is None:
            self._arm_watchdog(self._reply_timeout_s)

    def _arm_watchdog(self, delay_s: float) -> None:
        self._watchdog = self._running_loop().call_later(delay_s, self._watch)

    def _watch(self) -> None:
        self._watchdog = None
        if not self._pending or self._transport is None:
            return
        silent_s = self._running_loop().time() - self._progress_at
        if silent_s >= self._reply_timeout_s:
            self._timed_out = True
            self._transport.abort()  # connection_lost fails what is in flight with TimeoutError
            return
        self._arm_watchdog(self._reply_timeout_s - silent_s)

    # ------------------------------------------------------------------ reading

    def _on_reply(self, reply: Any) -> None:
        if not self._pending:
            return  # nothing asked for it (cannot happen on a healthy connection)
        fut = self._pending.popleft()
        call = self._scripts.pop(fut, None) if self._scripts else None
        if type(reply) is hiredis.ReplyError:
            message = str(reply)
            if call is not None and message.startswith("NOSCRIPT") and not fut.done():
                script, keys, args = call  # the same future waits for the EVAL's reply
                self._queued.append(fut)
                self._enqueue(pack_command((b"EVAL", script.source, len(keys), *keys, *args)))
                return
            if message.startswith(_UNAVAILABLE_PREFIXES):
                if not fut.done():
                    fut.set_exception(LaneUnavailable(f"registry answered {message}"))
                if self._transport is not None:
                    self._transport.close()  # reconnect: the endpoint may point at the new primary now
                return
            if not fut.done():
                fut.set_exception(LaneReplyError(message))
            return
        if not fut.done():
            fut.set_result(reply)

    def _on_lost(self, protocol: _Protocol) -> None:
        if protocol is not self._protocol:
            return
        self._transport = self._opening = None
        self._protocol = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._timed_out:
            self._timed_out = False
            self._fail_pending(TimeoutError(f"registry did not answer within {self._reply_timeout_s} s"))
        else:
            self._fail_pending(LaneUnavailable("registry connection lost"))
        if self._out and not self._flush_scheduled:  # never written: they go out on a new connection
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _fail_pending(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, deque()
        for fut in pending:
            self._scripts.pop(fut, None)
            if not fut.done():
                fut.set_exception(exc)

    def _fail_queued(self, exc: BaseException) -> None:
        queued = self._queued
        self._out, self._queued = [], []
        for fut in queued:
            self._scripts.pop(fut, None)
            if not fut.done():
                fut.set_exception(exc)

    # ------------------------------------------------------------------ connecting

    async def _connect(self) -> None:
        try:
            async with asyncio.timeout(self._ep.connect_timeout_s):
                await self._open()
        except BaseException as exc:
            self._connecting = None
            opening, self._opening = self._opening, None
            if opening is not None:
                opening.abort()
            if isinstance(exc, asyncio.CancelledError):
                raise
            reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            self._fail_queued(LaneUnavailable(f"cannot connect to the registry: {reason}"))
            return
        self._connecting = None
        self._transport, self._opening = self._opening, None
        self.generation += 1
        self._flush()

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        protocol = _Protocol(self)
        ep = self._ep
        if ep.scheme == "unix":
            transport, _ = await loop.create_unix_connection(lambda: protocol, ep.path)
        else:
            tls: ssl.SSLContext | None = None
            if ep.scheme == "rediss":
                tls = ssl.create_default_context()
                if not ep.verify_tls:
                    tls.check_hostname = False
                    tls.verify_mode = ssl.CERT_NONE
            transport, _ = await loop.create_connection(
                lambda: protocol, ep.host, ep.port, ssl=tls, server_hostname=ep.host if tls else None
            )
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                for option, value in ep.keepalive_options:
                    sock.setsockopt(socket.IPPROTO_TCP, option, value)
        # Commands are written only once the connection is set up (``_transport`` stays None until then).
        self._opening, self._protocol, self._loop = transport, protocol, loop
        setup: list[tuple[Any, ...]] = []
        username, password = await self._credentials()
        if password is not None:
            setup.append((b"AUTH", username, password) if username else (b"AUTH", password))
        if ep.db:
            setup.append((b"SELECT", ep.db))
        if setup:
            futures = [loop.create_future() for _ in setup]
            self._pending.extend(futures)
            transport.write(b"".join(hiredis.pack_command(cmd) for cmd in setup))
            for fut in futures:
                await fut  # an error reply (wrong password) raises LaneReplyError here

    async def _credentials(self) -> tuple[str | None, str | None]:
        provider = self._ep.credential_provider
        if provider is None:
            return self._ep.username, self._ep.password
        if hasattr(provider, "get_credentials_async"):
            creds = await provider.get_credentials_async()
        else:
            creds = provider.get_credentials()
        if len(creds) == 1:
            return None, creds[0]
        return creds[0], creds[1]
