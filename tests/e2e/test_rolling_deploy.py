"""A rolling deployment under 200 clients loses nothing, with and without the drain notice.

Both runs replace every server of the twin one at a time (minimum healthy 100 %) while every
client sends a numbered stream. The first run publishes the drain notice first (the AWS drain
notifier's path); the second only cuts the connections at the end of the deregistration delay and
then sends SIGTERM. The test prints one comparison line per run (run pytest with -s to see them).

One redis-server only: two deployments under 200 clients take about half a minute, too long to run
twice; the drain-notice rolling deploy on a Redis Cluster is test_push_through_deploy's cluster run.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import pytest
import redis

from stickyws.client.connection import StickyClient, peak_rate_per_s
from stickyws.twin.cluster import TwinCluster
from tests.e2e.support import E2E_SETTINGS, client_session, run, send_numbered, session_field, started_clients

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

CLIENTS = 200
#: Each client sends one numbered message every this many seconds (about 400 messages/s in all).
SEND_EVERY_S = 0.5


@dataclass(frozen=True)
class DeployRun:
    """What one deployment under load measured."""

    drain_notice: bool
    deploy_s: float
    sent: int
    reconnects: int
    abrupt_1006: int
    reconnect_frames: int
    peak_reconnects_per_s: float
    resent: int
    duplicate_acks: int
    confirmed_by_resume: int
    max_outage_s: float
    #: Seconds each old server took from deregistration to no connection (capped by the delay).
    drained_s: tuple[float, ...]

    def line(self) -> str:
        """The comparison line printed by the test."""
        mode = "with drain notice   " if self.drain_notice else "without (SIGTERM only)"
        return (
            f"rolling deploy {mode}: {CLIENTS} clients, {self.sent} messages, deploy {self.deploy_s:.1f} s, "
            f"reconnects {self.reconnects}, abrupt 1006 {self.abrupt_1006}, reconnect frames {self.reconnect_frames}, "
            f"peak reconnect rate {self.peak_reconnects_per_s:.0f}/s, resent {self.resent}, "
            f"duplicate acks {self.duplicate_acks}, confirmed by resume {self.confirmed_by_resume}, "
            f"longest outage {self.max_outage_s:.2f} s, "
            f"drained in {'/'.join(f'{d:.1f}' for d in self.drained_s)} s"
        )


def _deploy_under_load(twin: TwinCluster, *, drain_notice: bool) -> DeployRun:
    old_servers = set(twin.serving())

    async def scenario() -> DeployRun:
        async with client_session() as session:
            rng = random.Random(42)
            clients = started_clients(twin, session, E2E_SETTINGS, f"deploy-{int(drain_notice)}-", CLIENTS, rng)
            await asyncio.gather(*(c.wait_connected(30) for c in clients))
            stop = asyncio.Event()
            senders = [asyncio.create_task(send_numbered(c, stop, rng, SEND_EVERY_S)) for c in clients]
            await asyncio.sleep(1.0)
            started = time.monotonic()
            reports = await asyncio.to_thread(twin.rolling_deploy, drain_notice=drain_notice)
            deploy_s = time.monotonic() - started
            await asyncio.sleep(1.0)
            stop.set()
            await asyncio.gather(*senders)
            await asyncio.gather(*(c.wait_connected(20) for c in clients))
            await asyncio.gather(*(c.wait_confirmed(20) for c in clients))
            try:
                drained = tuple(r.drained_s for r in reports)
                return _check_and_measure(twin, clients, old_servers, drain_notice, deploy_s, drained)
            finally:
                await asyncio.gather(*(c.close() for c in clients))

    return run(scenario(), timeout_s=120)


def _check_and_measure(
    twin: TwinCluster,
    clients: list[StickyClient],
    old: set[str],
    drain_notice: bool,
    deploy_s: float,
    drained_s: tuple[float, ...],
) -> DeployRun:
    new = set(twin.serving())
    assert not new & old
    assert len(new) == len(old)
    registry = redis.Redis.from_url(twin.redis.url, decode_responses=True)
    try:
        for c in clients:
            box = c.outbox
            assert c.connected
            assert c.server_id in new
            assert box.pending == {}
            assert sorted(box.confirmations) == list(range(1, box.sent_count + 1))
            assert set(box.confirmations.values()) == {1}  # each message confirmed exactly once
            assert len(c.stats.session_ids) == 1  # one session for the whole run
            assert c.stats.not_resumed_reconnects == 0
            assert c.stats.resumed == len(c.stats.reconnect_times) >= 1
            assert c.session_id is not None
            handled = int(session_field(registry, c, "lastClientId") or 0)
            assert handled == box.sent_count  # the server handled every id, none twice (ids only grow)
    finally:
        registry.close()
    times = [t for c in clients for t in c.stats.reconnect_times]
    return DeployRun(
        drain_notice=drain_notice,
        deploy_s=deploy_s,
        sent=sum(c.outbox.sent_count for c in clients),
        reconnects=len(times),
        abrupt_1006=sum(c.stats.close_codes[1006] for c in clients),
        reconnect_frames=sum(c.stats.reconnect_frames for c in clients),
        peak_reconnects_per_s=peak_rate_per_s(times, window_s=0.25),
        resent=sum(c.outbox.resent for c in clients),
        duplicate_acks=sum(c.outbox.duplicate_acks for c in clients),
        confirmed_by_resume=sum(c.outbox.confirmed_by_resume for c in clients),
        max_outage_s=max(c.stats.max_outage_s for c in clients),
        drained_s=drained_s,
    )


def test_rolling_deploy_loses_nothing_and_the_drain_notice_spreads_reconnects(
    twin: TwinCluster, record_property: pytest.RecordProperty
) -> None:
    """200 clients survive two full deployments with every message confirmed once; the drain run has
    no 1006 and a lower reconnect peak than the SIGTERM-only run."""
    drained = _deploy_under_load(twin, drain_notice=True)
    abrupt = _deploy_under_load(twin, drain_notice=False)
    for r in (drained, abrupt):
        print(r.line())
        record_property(f"deploy_{'drain' if r.drain_notice else 'sigterm'}", r.line())
    assert drained.abrupt_1006 == 0
    assert drained.reconnect_frames >= CLIENTS  # every client was told to move at least once
    assert abrupt.abrupt_1006 >= CLIENTS  # every client was cut at least once
    # Nearly every move is a cut; a handshake racing the cut can still reach the old server and then be
    # told to reconnect by the server's own SIGTERM drain (seen once in 274).
    assert abrupt.abrupt_1006 >= 0.95 * abrupt.reconnects
    assert drained.peak_reconnects_per_s < abrupt.peak_reconnects_per_s
