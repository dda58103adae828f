"""The reference client: an aiohttp WebSocket that keeps its session across reconnects.

Thin adapter around the pure core (:mod:`~stickyws.client.backoff`, :mod:`~stickyws.client.cookies`,
:mod:`~stickyws.client.outbox`, :mod:`~stickyws.client.policy`), reporting what it sees as
:mod:`~stickyws.client.events` and building its handshakes with :mod:`~stickyws.client.handshake`::

    async with StickyClient("ws://127.0.0.1:8000/ws", token) as client:
        await client.wait_connected(timeout_s=10)
        msg_id = client.send({"text": "hello"})
        await client.wait_confirmed(timeout_s=10)
        async for event in client.events():   # or StickyClient(..., on_event=callback)
            print(event.kind, event.detail)

Each connection: handshake with the token, the resume token (after the first ``connected``) and
the endpoint's cookies (``AWSALB``...); store the cookies the answer sets; on ``connected``,
retransmit the outbox above ``lastClientId``; then read frames until the connection ends and ask
:mod:`~stickyws.client.policy` what to do. A ``reconnect`` frame drops the load balancer's stickiness
cookies and, when it names a revision to ``avoid``, puts ``avoid=<revision>`` in the next handshake's
query (:mod:`~stickyws.client.avoid`: given up after ``MAX_AVOID_HOPS`` sends-on in a row). A server
that does not speak ``stickyws.v1`` (its upgrade answer lacks the subprotocol, or no ``connected`` frame
comes within ``connect_timeout_s``) stops the client for good with a reason that says so: reconnecting
cannot fix it. ``close()`` is idempotent: it stops reconnecting, closes the socket with 1000 and waits
for the loop to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import aiohttp

from stickyws import protocol
from stickyws.client import policy
from stickyws.client.avoid import Avoid
from stickyws.client.backoff import Backoff, parse_retry_after
from stickyws.client.cookies import CookieJar
from stickyws.client.events import EVENT_KINDS, ClientStats, Event, peak_rate_per_s
from stickyws.client.handshake import (
    CLOSE_PROTOCOL_ERROR,
    HANDSHAKE_400_HINT,
    handshake_headers,
    not_stickyws_reason,
    with_query,
)
from stickyws.client.outbox import Outbox
from stickyws.errors import ReferenceClientError
from stickyws.settings import Settings

__all__ = [
    "CLOSED_BY_APPLICATION",
    "CLOSE_PROTOCOL_ERROR",
    "EVENT_KINDS",
    "ClientStats",
    "ClientStopped",
    "Event",
    "StickyClient",
    "handshake_headers",
    "peak_rate_per_s",
    "with_query",
]

#: The stop reason after :meth:`StickyClient.close` (the application ended the client, not the server).
CLOSED_BY_APPLICATION = "closed by the application"


class ClientStopped(ReferenceClientError, RuntimeError):
    """The client stopped for good (a rejected handshake or a final close code); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StickyClient:
    """A ``stickyws.v1`` client that reconnects, resumes and resends; see the module doc.

    ``on_event`` is called for every :class:`Event`, in the loop, and must not block or raise.
    ``session``: an ``aiohttp.ClientSession`` to share between clients; it must use
    ``aiohttp.DummyCookieJar()`` because cookies are per client (each holds its own stickiness).
    ``connect_timeout_s`` bounds each handshake, and the wait for the ``connected`` frame after it.
    ``rng`` makes the jitter reproducible.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        backoff: Backoff | None = None,
        settings: Settings | None = None,
        session: aiohttp.ClientSession | None = None,
        on_event: Callable[[Event], None] | None = None,
        connect_timeout_s: float = 10.0,
        use_cookies: bool = True,
        rng: random.Random | None = None,
        max_events: int = 10_000,
    ) -> None:
        if session is not None and not isinstance(session.cookie_jar, aiohttp.DummyCookieJar):
            raise ValueError("a shared aiohttp.ClientSession must use cookie_jar=aiohttp.DummyCookieJar()")
        self.url = url
        self.token = token
        self.backoff = backoff or Backoff.from_settings(settings or Settings())
        self.jar = CookieJar()
        self.outbox = Outbox()
        self.stats = ClientStats()
        self.use_cookies = use_cookies
        self.connect_timeout_s = connect_timeout_s
        self.server_id: str | None = None
        self.session_id: str | None = None
        self.resume_token: str | None = None
        #: Highest ``message`` seq received in this session: sent as ``lastSeq`` on resume so the server
        #: replays what came after it, and used to drop a message seen twice.
        self.last_seq = 0
        #: Topics this client subscribed to, and the position (offset, epoch) it holds in each.
        self.topics: set[str] = set()
        self.positions: dict[str, tuple[int, str]] = {}
        #: The revision the next handshake avoids (set by a drain's ``reconnect`` frame).
        self.avoid = Avoid()
        self.stop_reason: str | None = None
        self._session = session
        self._own_session = session is None
        self._on_event = on_event
        self._rng = rng or random.Random()
        self._events: asyncio.Queue[Event] = asyncio.Queue(maxsize=max_events)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._connected = asyncio.Event()
        self._changed = asyncio.Event()
        self._wake_writer = asyncio.Event()
        self._lost_at: float | None = None

    # Lifecycle

    async def __aenter__(self) -> StickyClient:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        """Start connecting in the background (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"stickyws-client-{id(self):x}")

    async def close(self) -> None:
        """Stop reconnecting, close the socket with 1000 and wait for the loop (idempotent)."""
        self._closing = True
        self._changed.set()
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(code=protocol.CLOSE_NORMAL), 2.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def connected(self) -> bool:
        """True between a ``connected`` frame and the end of that connection."""
        return self._connected.is_set()

    # Sending

    def send(self, data: Any) -> int:
        """Queue ``data`` for the server and return its id; it is retransmitted until confirmed."""
        msg = self.outbox.add(data)
        self._wake_writer.set()
        return msg.id

    def subscribe(self, topic: str) -> int:
        """Queue a subscription to ``topic``; returns its id. Publications arrive as ``publication``
        events; the client keeps each topic's position and recovers what it missed on reconnect."""
        self.topics.add(topic)
        msg = self.outbox.add_control("subscribe", topic, self.positions.get(topic))
        self._wake_writer.set()
        return msg.id

    def unsubscribe(self, topic: str) -> int:
        """Queue the end of a subscription to ``topic``; returns its id."""
        self.topics.discard(topic)
        self.positions.pop(topic, None)
        msg = self.outbox.add_control("unsubscribe", topic)
        self._wake_writer.set()
        return msg.id

    def _advance(self, topic: str, offset: int, epoch: str) -> bool:
        """Record a topic position; False when ``(offset, epoch)`` was seen already."""
        known = self.positions.get(topic)
        if known is not None and known[1] == epoch and offset <= known[0]:
            return False
        self.positions[topic] = (offset, epoch)
        return True

    # Waiting

    async def wait_connected(self, timeout_s: float) -> None:
        """Wait for a live connection; raises ``TimeoutError`` or :class:`ClientStopped`."""
        async with asyncio.timeout(timeout_s):
            while not self._connected.is_set():
                self._raise_if_stopped()
                await self._wait_change()

    async def wait_confirmed(self, timeout_s: float) -> None:
        """Wait until every queued message is confirmed; raises ``TimeoutError`` or :class:`ClientStopped`."""
        async with asyncio.timeout(timeout_s):
            while self.outbox.pending:
                self._raise_if_stopped()
                await self._wait_change()

    async def wait_for(self, predicate: Callable[[StickyClient], bool], timeout_s: float) -> None:
        """Wait until ``predicate(self)`` holds (re-checked after every event)."""
        async with asyncio.timeout(timeout_s):
            while not predicate(self):
                self._raise_if_stopped()
                await self._wait_change()

    async def events(self) -> AsyncIterator[Event]:
        """Every event from now on, until the client stops."""
        while True:
            event = await self._events.get()
            yield event
            if event.kind == "stopped":
                return

    def _raise_if_stopped(self) -> None:
        if self.stop_reason is not None:
            raise ClientStopped(self.stop_reason)

    async def _wait_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    def _emit(self, kind: str, **detail: Any) -> None:
        event = Event(kind, detail, time.monotonic())
        if self._on_event is not None:
            self._on_event(event)
        if self._events.full():
            self._events.get_nowait()  # keep the newest events; callbacks saw every one
        self._events.put_nowait(event)
        self._changed.set()

    # The connection loop

    async def _run(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        attempt = 0
        try:
            while not self._closing:
                decision, was_connected = await self._connect_once()
                if self._closing:
                    break
                if not decision.reconnect:
                    self.stop_reason = decision.reason
                    break
                if was_connected or decision.reset_attempts:
                    attempt = 0
                delay = self.backoff.delay_s(attempt, decision.hint_s, self._rng)
                self._emit("backoff", reason=decision.reason, delay_s=delay, attempt=attempt)
                attempt += 1
                await asyncio.sleep(delay)
        finally:
            self._connected.clear()
            self._emit("stopped", reason=self.stop_reason or CLOSED_BY_APPLICATION)

    def _handshake_url(self) -> str:
        """The upgrade URL: only what is not a credential (the token and the resume token travel in
        headers, see :meth:`_handshake_headers`, so they stay out of access logs)."""
        params: dict[str, str] = self.avoid.query()
        if self.resume_token:
            params[protocol.LAST_SEQ_QUERY] = str(self.last_seq)
            positions = {t: p for t, p in self.positions.items() if t in self.topics}
            if positions:
                params[protocol.SINCE_QUERY] = protocol.since_query(positions)
        return with_query(self.url, params) if params else self.url

    def _handshake_headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.resume_token:
            headers[protocol.RESUME_HEADER] = self.resume_token
        return headers

    async def _connect_once(self) -> tuple[policy.Decision, bool]:
        """One connection from handshake to close; returns the decision and whether it got ``connected``."""
        assert self._session is not None
        headers = self._handshake_headers()
        cookie = self.jar.header(self.url) if self.use_cookies else None
        if cookie:
            headers["Cookie"] = cookie
        self.stats.handshakes += 1
        self._emit("connecting", resume=bool(self.resume_token), cookies=sorted(self.jar.cookies(self.url)))
        try:
            ws = await asyncio.wait_for(
                self._session.ws_connect(
                    self._handshake_url(),
                    protocols=(protocol.SUBPROTOCOL,),
                    headers=headers,
                    autoping=True,
                    heartbeat=None,
                ),
                self.connect_timeout_s,
            )
        except aiohttp.WSServerHandshakeError as exc:
            status = exc.status or 0
            self.stats.handshake_statuses[status] += 1
            hdrs = exc.headers
            if self.use_cookies and hdrs is not None:
                self.jar.update(self.url, hdrs.getall("Set-Cookie", []))
            retry_after = parse_retry_after(hdrs.get("Retry-After") if hdrs is not None else None)
            self._emit("rejected", status=status, retry_after_s=retry_after)
            decision = policy.on_handshake_status(status, retry_after)
            if status == 400:
                decision = replace(decision, reason=decision.reason + HANDSHAKE_400_HINT)
            return decision, False
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.stats.connect_errors += 1
            return policy.on_connect_error(f"{type(exc).__name__}: {exc}".rstrip(": ")), False
        self._ws = ws
        headers = handshake_headers(ws)
        if self.use_cookies and hasattr(headers, "getall"):
            self.jar.update(self.url, headers.getall("Set-Cookie", []))
        if ws.protocol != protocol.SUBPROTOCOL:
            found = f"it accepted the WebSocket upgrade without the {protocol.SUBPROTOCOL} subprotocol"
            return await self._not_stickyws(ws, found), False
        return await self._serve(ws)

    async def _not_stickyws(self, ws: aiohttp.ClientWebSocketResponse, found: str) -> policy.Decision:
        """Close a connection to a server that does not speak ``stickyws.v1`` (1002) and stop for good."""
        self.stats.protocol_failures += 1
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code=CLOSE_PROTOCOL_ERROR), 2.0)
        self._ws = None
        decision = policy.Decision(False, not_stickyws_reason(found, self.connect_timeout_s))
        self._emit("closed", code=CLOSE_PROTOCOL_ERROR, reason=decision.reason)
        return decision

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> tuple[policy.Decision, bool]:
        writer: asyncio.Task[None] | None = None
        decision: policy.Decision | None = None
        was_connected = False
        loop = asyncio.get_running_loop()
        connected_by = loop.time() + self.connect_timeout_s  # the `connected` frame must come before this
        other_frames = 0
        sent_close: int | None = None  # the close code this client chose, when it ended the connection
        try:
            while True:
                # aiohttp reads a 0 timeout as "none": wait at least 1 ms
                wait_s = None if was_connected else max(0.001, connected_by - loop.time())
                try:
                    msg = await ws.receive(timeout=wait_s)
                except TimeoutError:
                    found = f"it accepted the {protocol.SUBPROTOCOL} subprotocol but sent no `connected` frame"
                    if other_frames:
                        found += f" ({other_frames} other frame{'s' if other_frames > 1 else ''} instead)"
                    self.stats.protocol_failures += 1
                    decision = policy.Decision(False, not_stickyws_reason(found, self.connect_timeout_s))
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(ws.close(code=CLOSE_PROTOCOL_ERROR), 2.0)
                    sent_close = CLOSE_PROTOCOL_ERROR
                    break
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    break
                if not was_connected:
                    other_frames += 1  # frames before `connected`: named if it never comes
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    frame = json.loads(msg.data)
                    kind = frame["type"] if isinstance(frame, dict) else None
                    if kind == "connected":
                        int(frame.get("lastClientId") or 0)
                    elif kind == "ack":
                        int(frame["id"])
                except (ValueError, KeyError, TypeError):
                    self.stats.bad_frames += 1
                    continue
                if kind == "connected":
                    was_connected = True
                    to_send = self._on_connected(frame)
                    writer = asyncio.create_task(self._writer(ws, to_send))
                elif kind == "ack":
                    self.outbox.on_ack(int(frame["id"]), duplicate=bool(frame.get("duplicate")))
                    topic, offset = frame.get("topic"), frame.get("offset")
                    if isinstance(topic, str) and isinstance(offset, int) and topic in self.topics:
                        known = self.positions.get(topic)
                        epoch = str(frame.get("epoch", ""))
                        if known is None or known[1] != epoch or known[0] < offset:
                            self.positions[topic] = (offset, epoch)
                    self._emit("ack", id=frame["id"], duplicate=bool(frame.get("duplicate")))
                elif kind == "publication":
                    topic, offset, epoch = frame.get("topic"), frame.get("offset"), frame.get("epoch")
                    if not (isinstance(topic, str) and isinstance(offset, int) and isinstance(epoch, str)):
                        self.stats.bad_frames += 1
                        continue
                    if not self._advance(topic, offset, epoch):
                        self.stats.duplicate_publications += 1
                        continue
                    self.stats.publications += 1
                    self._emit("publication", topic=topic, offset=offset, epoch=epoch, data=frame.get("data"))
                elif kind == "unrecoverable":
                    topic, offset, epoch = frame.get("topic"), frame.get("offset"), frame.get("epoch")
                    if isinstance(topic, str) and isinstance(offset, int) and isinstance(epoch, str):
                        self.positions[topic] = (offset, epoch)
                        self.stats.unrecoverable += 1
                        self._emit("unrecoverable", topic=topic, offset=offset, epoch=epoch)
                elif kind == "gap":
                    to_seq = frame.get("toSeq")
                    if isinstance(to_seq, int):
                        self.last_seq = max(self.last_seq, to_seq)
                        self.stats.gaps += 1
                        self._emit("gap", from_seq=frame.get("fromSeq"), to_seq=to_seq)
                elif kind == "message":
                    seq = frame.get("seq")
                    if isinstance(seq, int) and seq <= self.last_seq:
                        self.stats.duplicate_messages += 1
                        continue
                    if isinstance(seq, int):
                        self.last_seq = seq
                    self.stats.messages += 1
                    self._emit("message", seq=seq, data=frame.get("data"))
                elif kind == "error":
                    self._emit("error", code=frame.get("code"), message=frame.get("message"), id=frame.get("id"))
                elif kind == "reconnect":
                    self.stats.reconnect_frames += 1
                    if frame.get("reason") == protocol.RECONNECT_SEND_ON:
                        self.stats.sends_on += 1
                    self.avoid.on_reconnect_frame(frame)
                    if self.use_cookies:
                        self.jar.drop_sticky(self.url)
                    decision = policy.on_reconnect_frame(frame)
                    self._emit(
                        "reconnect_requested", reason=frame.get("reason"), retry_after_ms=frame.get("retryAfterMs"),
                        avoid=self.avoid.revision,
                    )  # fmt: skip
                    await ws.close(code=protocol.CLOSE_GOING_AWAY)
                    break
        except (aiohttp.ClientError, OSError):
            pass
        finally:
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writer
            self._ws = None
            if self._connected.is_set():
                self._lost_at = time.monotonic()
            self._connected.clear()
        code = sent_close or ws.close_code
        if self._closing:
            decision = policy.Decision(False, CLOSED_BY_APPLICATION)
        elif decision is None:
            self.stats.close_codes[code if code is not None else protocol.CLOSE_ABNORMAL] += 1
            decision = policy.on_close(code)
        self._emit("closed", code=code, reason=decision.reason)
        return decision, was_connected

    def _on_connected(self, frame: dict[str, Any]) -> list[protocol.ClientMessage]:
        first = self.stats.connects == 0
        self.stats.connects += 1
        resumed = bool(frame.get("resumed"))
        now = time.monotonic()
        if not first:
            self.stats.reconnect_times.append(now)
            if resumed:
                self.stats.resumed += 1
            else:
                self.stats.not_resumed_reconnects += 1
        if self._lost_at is not None:
            self.stats.max_outage_s = max(self.stats.max_outage_s, now - self._lost_at)
            self._lost_at = None
        self.avoid.on_connected()
        self.server_id = str(frame.get("serverId"))
        self.session_id = str(frame.get("sessionId"))
        token = frame.get("resumeToken")
        self.resume_token = token if isinstance(token, str) and token else None
        if not resumed:
            self.last_seq = 0  # a new session numbers its messages from 1 again
            # A fresh session holds no subscriptions: subscribe again, recovering from the positions held.
            pending = {m.message.topic for m in self.outbox.pending.values() if m.message.type == "subscribe"}
            for topic in sorted(self.topics - pending):
                self.outbox.add_control("subscribe", topic, self.positions.get(topic))
        self.stats.servers.append(self.server_id)
        self.stats.session_ids.add(self.session_id)
        to_send = self.outbox.on_connected(int(frame.get("lastClientId") or 0), resumed=resumed)
        self._connected.set()
        self._emit(
            "connected",
            server=self.server_id,
            session=self.session_id,
            resumed=resumed,
            last_client_id=frame.get("lastClientId"),
            resending=len(to_send),
        )
        return to_send

    async def _writer(self, ws: aiohttp.ClientWebSocketResponse, first: list[protocol.ClientMessage]) -> None:
        """Write ``first`` then every newly queued message, in id order, on this connection only."""
        watermark = 0
        batch = first
        while True:
            for msg in batch:
                if msg.id <= watermark or msg.id not in self.outbox.pending:
                    continue
                await ws.send_str(msg.to_json())
                self.outbox.transmitted(msg.id)
                watermark = msg.id
            self._wake_writer.clear()
            batch = self.outbox.to_transmit(watermark)
            if not batch:
                await self._wake_writer.wait()
                batch = self.outbox.to_transmit(watermark)
