"""Scenario 4: a reconnect storm through the local twin (reference stack only).

Three reference servers behind HAProxy (:class:`stickyws.twin.cluster.TwinCluster`), N reference
clients (:class:`stickyws.client.connection.StickyClient`, one Python process) each sending a
numbered message every ``SEND_EVERY_S``; then ``deregister`` one server, exactly as the twin does it
(drain notice, ``maint``, deregistration delay, SIGTERM). Measured: the time from the start of the
deregistration until every client of that server is connected again with its session resumed, the
peak handshake rate the survivors took (client-side ``connected`` times, 1 s sliding window), and
messages lost: client ids never confirmed, ids handled twice, a session whose stored ``lastClientId``
differs from what its client sent, and gaps in the server's ``message`` seq as seen by the client.

Pinning: the twin's processes (redis, HAProxy, servers) inherit the server core; the clients then
move to the generator core. The Node peer has no drain, resume or replay: there is nothing to compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import aiohttp
import redis

from stickyws import keys
from stickyws.client.backoff import Backoff
from stickyws.client.connection import Event, StickyClient, peak_rate_per_s
from stickyws.settings import Settings
from stickyws.twin.cluster import TwinCluster

T = TypeVar("T")

#: The storm's settings: short but inside the AWS ranges; the target is drain window + max backoff.
STORM_OVERRIDES: dict[str, Any] = {
    "deregistration_delay_s": 20,
    "drain_window_s": 8,
    "shutdown_timeout_s": 3,
    "stop_timeout_s": 5,
    "heartbeat_interval_s": 1,
    "heartbeat_ttl_s": 3,
    "reconnect_base_ms": 500,
    "reconnect_cap_s": 5,
}
SEND_EVERY_S = 5.0
TIME_SCALE = 0.05
#: Bound on the whole scenario.
STORM_TIMEOUT_S = 150.0


class _SeqWatch:
    """Per-client ``message`` seqs seen (to find gaps in what the server sent)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def __call__(self, event: Event) -> None:
        if event.kind == "message" and isinstance(event.detail.get("seq"), int):
            self.seen.add(event.detail["seq"])

    def gaps(self) -> int:
        return (max(self.seen) - len(self.seen)) if self.seen else 0


async def connect_clients(twin: TwinCluster, settings: Settings, session: aiohttp.ClientSession, clients_n: int,
                          user_prefix: str, rng: random.Random,
                          say: Callable[[str], None]) -> tuple[list[StickyClient], list[_SeqWatch]]:  # fmt: skip
    """Start ``clients_n`` reference clients of users ``{user_prefix}{i}`` and wait until all are connected."""
    watches = [_SeqWatch() for _ in range(clients_n)]
    clients = [
        StickyClient(twin.url, twin.token(f"{user_prefix}{i}"), backoff=Backoff.from_settings(settings),
                     session=session, rng=random.Random(rng.random()), on_event=watches[i], connect_timeout_s=20)
        for i in range(clients_n)
    ]  # fmt: skip
    t0 = time.monotonic()
    for i, c in enumerate(clients):
        c.start()
        if i % 200 == 199:
            await asyncio.sleep(0.05)
    await asyncio.gather(*(c.wait_connected(60) for c in clients))
    say(f"  {clients_n} clients connected in {time.monotonic() - t0:.1f} s")
    return clients, watches


async def stream(c: StickyClient, stop: asyncio.Event, rng: random.Random) -> None:
    """Send a numbered message every :data:`SEND_EVERY_S` (from a random start) until ``stop``."""
    await asyncio.sleep(rng.uniform(0, SEND_EVERY_S))
    while not stop.is_set():
        c.send({"n": c.outbox.next_id})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SEND_EVERY_S)


def losses(
    twin: TwinCluster, clients: list[StickyClient], watches: list[_SeqWatch], user_prefix: str
) -> dict[str, int]:
    """What the clients of users ``{user_prefix}{i}`` lost or had handled twice, once every send is confirmed.

    ``unconfirmed``: client ids never confirmed; ``handled_twice``: ids confirmed more than once;
    ``stored_mismatch``: sessions whose stored ``lastClientId`` differs from what their client sent;
    ``seq_gaps``: gaps in the server's ``message`` seq as each client saw it; ``lost``: their sum.
    """
    registry = redis.Redis.from_url(twin.redis.url, decode_responses=True)
    try:
        stored_mismatch = 0
        for i, c in enumerate(clients):
            assert c.session_id is not None
            # Sessions are keyed by user (one per user); the hash's sid names the session.
            stored = registry.hmget(keys.session_key(f"{user_prefix}{i}"), ["sid", "lastClientId"])
            handled = int(stored[1] or 0) if stored[0] == c.session_id else 0
            stored_mismatch += handled != c.outbox.sent_count
    finally:
        registry.close()
    unconfirmed = sum(len(c.outbox.pending) for c in clients)
    twice = sum(1 for c in clients for n in c.outbox.confirmations.values() if n > 1)
    gaps = sum(w.gaps() for w in watches)
    return {
        "unconfirmed": unconfirmed,
        "handled_twice": twice,
        "stored_mismatch": stored_mismatch,
        "seq_gaps": gaps,
        "lost": unconfirmed + twice + stored_mismatch + gaps,
    }


async def _storm(twin: TwinCluster, settings: Settings, clients_n: int, client_core: int | None,
                 say: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    if client_core is not None:
        os.sched_setaffinity(0, {client_core})
    rng = random.Random(6)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
        clients, watches = await connect_clients(twin, settings, session, clients_n, "storm-", rng, say)
        stop = asyncio.Event()
        senders = [asyncio.create_task(stream(c, stop, rng)) for c in clients]
        await asyncio.sleep(SEND_EVERY_S)
        victim = twin.serving()[0]
        moved = [c for c in clients if c.server_id == victim]
        started = time.monotonic()
        report = await asyncio.to_thread(twin.deregister, victim)
        deregister_s = time.monotonic() - started
        await asyncio.gather(*(c.wait_for(lambda c: c.connected and c.server_id != victim, 30) for c in moved))
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*senders)
        await asyncio.gather(*(c.wait_confirmed(30) for c in clients))
        back_at = [max(c.stats.reconnect_times) for c in moved if c.stats.reconnect_times]
        times = [t for c in clients for t in c.stats.reconnect_times if t >= started]
        lost = losses(twin, clients, watches, "storm-")
        result = {
            "clients": clients_n,
            "moved": len(moved),
            "victim": victim,
            "sent": sum(c.outbox.sent_count for c in clients),
            "resent": sum(c.outbox.resent for c in clients),
            "resumed": sum(1 for c in moved if c.stats.resumed >= 1 and len(c.stats.session_ids) == 1),
            "not_resumed": sum(c.stats.not_resumed_reconnects for c in clients),
            "abrupt_1006": sum(c.stats.close_codes[1006] for c in clients),
            "reconnect_frames": sum(c.stats.reconnect_frames for c in clients),
            "all_back_s": (max(back_at) - started) if len(back_at) == len(moved) else float("inf"),
            "peak_handshakes_per_s": peak_rate_per_s(times),
            **lost,
            "deregister_s": deregister_s,
            "drained_s": report.drained_s,
            "connections_cut": report.connections_cut,
            "target_s": float(settings["drain_window_s"]) + float(settings["reconnect_cap_s"]),
        }
        await asyncio.gather(*(c.close() for c in clients))
        return result


def on_twin(settings: Settings, server_core: int | None, client_core: int | None, timeout_s: float,
            scenario: Callable[[TwinCluster], Coroutine[Any, Any, T]]) -> T:  # fmt: skip
    """Start a 3-server twin (its processes on ``server_core``), run ``scenario`` on it from ``client_core``
    within ``timeout_s``, stop the twin; this process's CPU affinity is restored."""
    before = os.sched_getaffinity(0)
    if server_core is not None:
        os.sched_setaffinity(0, {server_core})
    try:
        with TwinCluster(settings, servers=3, time_scale=TIME_SCALE) as twin:
            if client_core is not None:
                os.sched_setaffinity(0, {client_core})

            async def bounded() -> T:
                async with asyncio.timeout(timeout_s):
                    return await scenario(twin)

            return asyncio.run(bounded())
    finally:
        os.sched_setaffinity(0, before)


def run_storm(base: Settings, clients_n: int, server_core: int | None, client_core: int | None,
              say: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    """Start the twin (its processes on ``server_core``), run the storm from ``client_core``, stop the twin."""
    settings = base.with_overrides(STORM_OVERRIDES)
    result = on_twin(settings, server_core, client_core, STORM_TIMEOUT_S,
                     lambda twin: _storm(twin, settings, clients_n, client_core, say))  # fmt: skip
    say(f"  storm: {result['moved']} clients moved off {result['victim']}, all back after "
        f"{result['all_back_s']:.2f} s (target {result['target_s']:g} s), peak "
        f"{result['peak_handshakes_per_s']:.0f} handshakes/s on the survivors, {result['sent']} messages sent, "
        f"{result['lost']} lost, {result['resumed']}/{result['moved']} resumed")  # fmt: skip
    return result
