"""Probe clients through a twin deployment: what only clients can see, messages lost or delivered twice.

:class:`ProbeClients` runs N reference clients (:class:`stickyws.client.connection.StickyClient`)
and a backend (:class:`stickyws.publish.Publisher`) in a thread of its own while a deployment runs:

* each client sends a numbered message every ``send_every_s``; the reference server's handler
  echoes each message once, so every number must come back exactly once;
* the backend pushes a numbered message to one user after another (``send_to_user``) and
  publishes a numbered publication to one topic every client subscribed to.

When the deployment is over, :meth:`ProbeClients.finish` stops sending, waits (at most
``settle_s``) until every client is connected and everything sent has arrived, and counts
(:func:`deliveries`): **lost** is a number sent that never arrived, **doubled** an arrival beyond the
first. The client drops a ``message`` or ``publication`` it has already seen (by seq and offset),
so a doubled count means the application itself saw it twice. The probes need a server that answers
each message once, as the reference server's echo handler does.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stickyws.settings import Settings
from stickyws.twin.processes import TwinError

#: Seconds the probe clients get to connect (and subscribe) before the deployment starts.
CONNECT_TIMEOUT_S = 20.0
#: The topic every probe client subscribes to.
TOPIC = "twin-probe"


@dataclass(frozen=True)
class Deliveries:
    """Numbered items: how many were sent, how many never arrived, how many arrivals were beyond the first."""

    sent: int
    lost: int
    doubled: int


def deliveries(sent: Sequence[int], received: Sequence[int]) -> Deliveries:
    """Count ``received`` against ``sent`` (numbers): lost = sent and never received, doubled = repeats."""
    got = Counter(received)
    numbers = set(sent)
    return Deliveries(
        sent=len(numbers),
        lost=sum(1 for n in numbers if got[n] == 0),
        doubled=sum(c - 1 for c in got.values() if c > 1),
    )


@dataclass(frozen=True)
class ProbeCount:
    """What the probe clients saw (see the module doc); ``servers``: each client's servers, in connection order."""

    clients: int
    messages: Deliveries
    pushes: Deliveries
    publications: Deliveries
    servers: tuple[tuple[str, ...], ...]
    settled: bool

    @property
    def lost(self) -> int:
        """Messages, pushes and publications that never arrived."""
        return self.messages.lost + self.pushes.lost + self.publications.lost

    @property
    def doubled(self) -> int:
        """Messages, pushes and publications that arrived more than once."""
        return self.messages.doubled + self.pushes.doubled + self.publications.doubled

    def render(self) -> str:
        """``4 probe clients: 0 lost, 0 doubled (80 messages, 60 pushes, 40 publication deliveries)``."""
        return (
            f"{self.clients} probe clients: {self.lost} lost, {self.doubled} doubled ({self.messages.sent} messages, "
            f"{self.pushes.sent} pushes, {self.publications.sent} publication deliveries)"
            + ("" if self.settled else "; not everything had arrived when the wait ended")
        )


class ProbeClients:
    """N probe clients and a backend in a thread (see the module doc); use as a context manager.

    ``token`` makes a connection token for a user id; ``url`` is the twin's WebSocket URL and
    ``redis_url`` its registry. Entering returns once every client is connected and subscribed
    (:class:`TwinError` otherwise); :meth:`finish` stops and counts; leaving stops in any case.
    """

    def __init__(
        self,
        *,
        url: str,
        redis_url: str,
        token: Callable[[str], str],
        settings: Settings,
        clients: int,
        send_every_s: float = 0.5,
        push_every_s: float = 0.1,
        publish_every_s: float = 0.5,
        settle_s: float = 20.0,
        prefix: str = "probe",
    ) -> None:
        if clients < 1:
            raise ValueError(f"clients={clients} must be at least 1")
        self.url = url
        self.redis_url = redis_url
        self.settings = settings
        self.n = clients
        self.users = [f"{prefix}-{i}" for i in range(clients)]
        self.tokens = [token(u) for u in self.users]
        self.send_every_s = send_every_s
        self.push_every_s = push_every_s
        self.publish_every_s = publish_every_s
        self.settle_s = settle_s
        self.result: ProbeCount | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="twin-probes", daemon=True)
        # what was sent and what arrived, by client index
        self._sent: dict[int, list[int]] = defaultdict(list)
        self._echoed: dict[int, list[int]] = defaultdict(list)
        self._pushed: dict[int, list[int]] = defaultdict(list)
        self._got_pushes: dict[int, list[int]] = defaultdict(list)
        self._published: list[int] = []
        self._got_publications: dict[int, list[int]] = defaultdict(list)

    def __enter__(self) -> ProbeClients:
        self._thread.start()
        if not self._ready.wait(CONNECT_TIMEOUT_S + 5.0) or self.error is not None:
            self._stop.set()
            self._thread.join(timeout=10.0)
            raise TwinError(f"the {self.n} probe clients did not connect through {self.url}: {self.error}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.settle_s + 10.0)

    def finish(self) -> ProbeCount:
        """Stop sending, wait until everything sent has arrived (at most ``settle_s``), and count."""
        self._stop.set()
        self._thread.join(timeout=self.settle_s + 10.0)
        if self.result is None:
            raise TwinError(f"the probe clients did not finish: {self.error or 'still running'}")
        return self.result

    # The thread

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by __enter__ / finish, never a traceback
            self.error = exc
            self._ready.set()

    def _recorder(self, i: int) -> Callable[[Any], None]:
        def on_event(event: Any) -> None:
            data = event.detail.get("data")
            if not isinstance(data, dict):
                return
            if event.kind == "message" and "probe" in data:
                self._echoed[i].append(int(data["probe"]))
            elif event.kind == "message" and "push" in data:
                self._got_pushes[i].append(int(data["push"]))
            elif event.kind == "publication" and "pub" in data:
                self._got_publications[i].append(int(data["pub"]))

        return on_event

    async def _main(self) -> None:
        import aiohttp

        from stickyws.client.backoff import Backoff
        from stickyws.client.connection import StickyClient
        from stickyws.publish import Publisher

        connector = aiohttp.TCPConnector(limit=0)
        async with (
            aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session,
            Publisher(self.redis_url, settings=self.settings) as pub,
        ):
            rng = random.Random(self.n)
            clients = [
                StickyClient(
                    self.url,
                    token,
                    backoff=Backoff.from_settings(self.settings),
                    session=session,
                    on_event=self._recorder(i),
                    rng=random.Random(rng.random()),
                )
                for i, token in enumerate(self.tokens)
            ]
            for c in clients:
                c.start()
            try:
                await asyncio.gather(*(c.wait_connected(CONNECT_TIMEOUT_S) for c in clients))
                for c in clients:
                    c.subscribe(TOPIC)
                await asyncio.gather(*(c.wait_confirmed(CONNECT_TIMEOUT_S) for c in clients))
                self._ready.set()
                await asyncio.gather(self._send(clients), self._push(pub), self._publish(pub))
                await self._settle(clients)
            finally:
                await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    async def _every(self, interval_s: float, act: Callable[[int], Any]) -> None:
        """Call ``act(k)`` every ``interval_s`` until stopped (k = 0, 1, ...)."""
        start = time.monotonic()
        k = 0
        while not self._stop.is_set():
            await act(k)
            k += 1
            if (wait := start + k * interval_s - time.monotonic()) > 0:
                await asyncio.sleep(wait)

    async def _send(self, clients: list[Any]) -> None:
        async def act(k: int) -> None:
            for i, c in enumerate(clients):
                c.send({"probe": k})
                self._sent[i].append(k)

        await self._every(self.send_every_s, act)

    async def _push(self, pub: Any) -> None:
        async def act(k: int) -> None:
            i = k % self.n
            n = len(self._pushed[i])
            result = await pub.send_to_user(self.users[i], {"push": n})
            if result.status in ("sent", "stored"):
                self._pushed[i].append(n)

        await self._every(self.push_every_s / self.n, act)

    async def _publish(self, pub: Any) -> None:
        async def act(k: int) -> None:
            await pub.publish(TOPIC, {"pub": k})
            self._published.append(k)

        await self._every(self.publish_every_s, act)

    def _complete(self, clients: list[Any]) -> bool:
        return all(
            c.connected
            and set(self._echoed[i]) >= set(self._sent[i])
            and set(self._got_pushes[i]) >= set(self._pushed[i])
            and set(self._got_publications[i]) >= set(self._published)
            for i, c in enumerate(clients)
        )

    async def _settle(self, clients: list[Any]) -> None:
        deadline = time.monotonic() + self.settle_s
        while not (settled := self._complete(clients)) and time.monotonic() < deadline:  # noqa: ASYNC110 - polls several clients' counts, bounded by the deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # a late second copy of something would arrive now
        n = range(self.n)
        self.result = ProbeCount(
            clients=self.n,
            messages=_sum(deliveries(self._sent[i], self._echoed[i]) for i in n),
            pushes=_sum(deliveries(self._pushed[i], self._got_pushes[i]) for i in n),
            publications=_sum(deliveries(self._published, self._got_publications[i]) for i in n),
            servers=tuple(tuple(c.stats.servers) for c in clients),
            settled=settled,
        )


def _sum(parts: Any) -> Deliveries:
    items = list(parts)
    return Deliveries(
        sent=sum(d.sent for d in items), lost=sum(d.lost for d in items), doubled=sum(d.doubled for d in items)
    )
