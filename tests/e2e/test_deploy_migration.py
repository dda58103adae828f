"""Blue/green, linear and canary deployments in the twin with the migration hook: every client moved once, at the
pace, nothing lost; the same deployment without the hook cuts every client at once; a rollback moves them back.

One twin for the module (2 servers on each side of a deployment). Every test runs CLIENTS reference clients,
each sending a numbered message every SEND_EVERY_S (the reference server echoes it), and a backend pushing
numbered messages to every user and publishing numbered publications to one topic, from before the deployment
until everything sent has arrived. Run pytest with -s to see each deployment's report.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from stickyws.client.backoff import Backoff
from stickyws.client.connection import Event, StickyClient
from stickyws.localproc import pid_alive
from stickyws.publish import Publisher
from stickyws.twin.blue_green import PACED, DeployReport, Paced
from stickyws.twin.cluster import TwinCluster
from tests.e2e.support import E2E_SETTINGS, TIME_SCALE, client_session, require_binaries, run

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

SERVERS = 2
#: 12 clients per server: each drains at 12 / 1.5 s = 8 reconnects/s, so at a pace of 10/s the hook tells one
#: server at a time; all 24 cut at once reconnect within a backoff's first jitter (250 ms).
CLIENTS = 24
PACE_PER_S = 10.0
#: The measured peak (1 s windows of HAProxy's request counters) may exceed the pace by this share: a server's
#: instructions are spread over random moments of equal slots, and clients add their own jitter.
PACE_MARGIN = 0.5
#: The twin's own probe clients in the canary test (they move with the others: 14 per server, 9.3/s each).
PROBES = 4
SEND_EVERY_S = 0.25
PUSH_EVERY_S = 0.01
PUBLISH_EVERY_S = 0.1
TOPIC = "deploy-news"
BAKE_S = 1.0
STEP_BAKE_S = 0.5
SETTINGS = E2E_SETTINGS.with_overrides(
    {"traffic_step_percent": 50, "migration_pace_per_s": PACE_PER_S, "migration_window_s": 30}
)


@pytest.fixture(scope="module")
def module_twin() -> Iterator[TwinCluster]:
    """Two reference servers, redis and HAProxy for the module, stopped after it with none of their processes
    left (every server a deployment started included)."""
    require_binaries()
    with TwinCluster(SETTINGS, servers=SERVERS, time_scale=TIME_SCALE) as twin:
        yield twin
        pids = sorted({*twin.pids(), *(p.proc.pid for p in twin.procs.values())})
    assert [pid for pid in pids if pid_alive(pid)] == []


@pytest.fixture
def twin(module_twin: TwinCluster) -> TwinCluster:
    """The module's twin with exactly two servers serving."""
    assert len(module_twin.serving()) == SERVERS
    return module_twin


@dataclass
class Traffic:
    """What every client sent and received, and what the backend pushed and published."""

    sent: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    echoed: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    pushed: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    received: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    seqs: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    published: list[int] = field(default_factory=list)
    publications: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))

    def recorder(self, i: int) -> Any:
        def on_event(event: Event) -> None:
            data = event.detail.get("data")
            if event.kind == "message" and isinstance(data, dict):
                self.seqs[i].append(event.detail["seq"])
                if "c" in data:
                    self.echoed[i].append(data["c"])
                else:
                    self.received[i].append(data["n"])
            elif event.kind == "publication" and isinstance(data, dict):
                self.publications[i].append(data["p"])

        return on_event

    def complete(self) -> bool:
        return all(
            len(self.echoed[i]) >= len(self.sent[i])
            and len(self.received[i]) >= len(self.pushed[i])
            and len(self.publications[i]) >= len(self.published)
            for i in range(CLIENTS)
        )


@dataclass
class Outcome:
    report: DeployReport
    clients: list[StickyClient]
    traffic: Traffic
    before: set[str]


def deploy_through_traffic(
    twin: TwinCluster, strategy: str, *, hook: Paced | None = PACED, rollback: bool = False, probes: int = 0
) -> Outcome:
    """Connect CLIENTS clients, run the traffic, deploy ``strategy``, and wait until everything sent arrived."""
    before = set(twin.serving())
    traffic = Traffic()
    prefix = f"{strategy}-{'hook' if hook else 'none'}-{'back' if rollback else 'on'}"

    async def scenario() -> tuple[DeployReport, list[StickyClient]]:
        async with client_session() as session, Publisher(twin.redis.url, settings=SETTINGS) as pub:
            rng = random.Random(11)
            clients = [
                StickyClient(
                    twin.url,
                    twin.token(f"{prefix}-{i}"),
                    backoff=Backoff.from_settings(SETTINGS),
                    session=session,
                    rng=random.Random(rng.random()),
                    on_event=traffic.recorder(i),
                )
                for i in range(CLIENTS)
            ]
            for c in clients:
                c.start()
            try:
                await asyncio.gather(*(c.wait_connected(20) for c in clients))
                for c in clients:
                    c.subscribe(TOPIC)
                await asyncio.gather(*(c.wait_confirmed(20) for c in clients))
                done = asyncio.Event()

                async def every(interval_s: float, act: Any) -> None:
                    start, k = time.monotonic(), 0
                    while not done.is_set():
                        await act(k)
                        k += 1
                        if (wait := start + k * interval_s - time.monotonic()) > 0:
                            await asyncio.sleep(wait)

                async def send(k: int) -> None:
                    for i, c in enumerate(clients):
                        c.send({"c": k})
                        traffic.sent[i].append(k)

                async def push(k: int) -> None:
                    i = k % CLIENTS
                    n = len(traffic.pushed[i])
                    result = await pub.send_to_user(f"{prefix}-{i}", {"n": n})
                    assert result.status in ("sent", "stored"), result
                    traffic.pushed[i].append(n)

                async def publish(k: int) -> None:
                    await pub.publish(TOPIC, {"p": k})
                    traffic.published.append(k)

                producing = asyncio.gather(
                    every(SEND_EVERY_S, send), every(PUSH_EVERY_S, push), every(PUBLISH_EVERY_S, publish)
                )
                await asyncio.sleep(0.5)
                report = await asyncio.to_thread(
                    twin.deploy,
                    strategy,
                    hook=hook,
                    bake_s=BAKE_S,
                    step_bake_s=STEP_BAKE_S,
                    rollback=rollback,
                    probes=probes,
                )
                assert isinstance(report, DeployReport)
                serving = set(twin.serving())
                await asyncio.gather(
                    *(c.wait_for(lambda c: c.connected and c.server_id in serving, 20) for c in clients)
                )
                done.set()
                await producing
                async with asyncio.timeout(20):
                    while not traffic.complete():  # noqa: ASYNC110 - bounded by the timeout
                        await asyncio.sleep(0.05)
                return report, clients
            finally:
                await asyncio.gather(*(c.close() for c in clients))

    report, clients = run(scenario(), timeout_s=80)
    print(f"\n{report.render()}")
    return Outcome(report, clients, traffic, before)


def assert_nothing_lost_or_doubled(outcome: Outcome) -> None:
    """Every numbered message echoed once, every push and publication received once, in order."""
    t = outcome.traffic
    assert sum(len(v) for v in t.sent.values()) > 0
    assert sum(len(v) for v in t.pushed.values()) > 0
    assert t.published
    for i, c in enumerate(outcome.clients):
        assert t.echoed[i] == t.sent[i], f"client {i}: numbered messages lost, doubled or reordered"
        assert t.received[i] == t.pushed[i], f"client {i}: pushes lost, doubled or reordered"
        assert t.publications[i] == t.published, f"client {i}: publications lost, doubled or reordered"
        assert t.seqs[i] == list(range(t.seqs[i][0], t.seqs[i][0] + len(t.seqs[i])))
        assert (c.stats.gaps, c.stats.unrecoverable) == (0, 0)


def assert_paced_move(outcome: Outcome, strategy: str, probes: int = 0) -> None:
    """Every client (and probe client) moved once from blue to green by the hook, at the pace, none cut, nothing
    lost."""
    report, clients = outcome.report, outcome.clients
    green = set(report.green)
    assert set(report.blue) == outcome.before
    assert report.hooked
    assert report.hook_calls >= 2
    assert report.blue_connections_at_shift == CLIENTS + probes
    assert report.moved == CLIENTS + probes
    assert report.moved_more_than_once == 0
    assert (report.cut, report.blue_connections_at_cleanup) == (0, 0)
    assert report.peak_handshakes_per_s <= PACE_PER_S * (1 + PACE_MARGIN), report.render()
    for c in clients:
        assert c.stats.servers[0] in outcome.before
        assert c.stats.servers[1:] == [c.server_id]
        assert c.server_id in green
        assert c.stats.reconnect_frames == 1
        assert c.stats.close_codes[1006] == 0
    assert_nothing_lost_or_doubled(outcome)
    stages = [s.name for s in report.stages]
    assert stages == ["scale up", "production traffic shift", "hook", "bake", "cleanup"], strategy


def test_blue_green_with_the_migration_hook_moves_every_client_once_at_the_pace_and_loses_nothing(
    twin: TwinCluster,
) -> None:
    """Blue/green with the default hook: every client moved from blue to green exactly once, none cut, the peak
    handshake rate within the pace plus PACE_MARGIN, every message, push and publication delivered once; the
    report says lost and doubled were not measured (no probe clients)."""
    outcome = deploy_through_traffic(twin, "blue_green")
    assert_paced_move(outcome, "blue_green")
    assert outcome.report.lost is None
    assert outcome.report.doubled is None
    assert "lost not measured, doubled not measured" in outcome.report.render()


def test_the_same_deployment_without_the_hook_cuts_every_blue_client_at_once(twin: TwinCluster) -> None:
    """Without the hook every client stays on blue until cleanup cuts it (1006), none is moved, the reconnect wave
    peaks above the paced limit, and still nothing is lost."""
    outcome = deploy_through_traffic(twin, "blue_green", hook=None)
    report = outcome.report
    assert not report.hooked
    assert report.hook_calls == 0
    assert (report.blue_connections_at_cleanup, report.cut, report.moved) == (CLIENTS, CLIENTS, 0)
    assert report.peak_handshakes_per_s > PACE_PER_S * (1 + PACE_MARGIN), report.render()
    for c in outcome.clients:
        assert c.stats.close_codes[1006] == 1
        assert c.stats.reconnect_frames == 0
    assert_nothing_lost_or_doubled(outcome)


def test_linear_with_the_migration_hook_moves_every_client_once_at_the_pace(twin: TwinCluster) -> None:
    """Linear (50 % steps) with the hook: the hook runs after the last step, and every client moves once, at the
    pace, nothing lost."""
    outcome = deploy_through_traffic(twin, "linear")
    assert [s.green_percent for s in outcome.report.steps] == [50.0, 100.0]
    assert_paced_move(outcome, "linear")


def test_canary_with_the_migration_hook_and_probe_clients_reports_nothing_lost_or_doubled(twin: TwinCluster) -> None:
    """Canary with the hook moves every client once at the pace; the twin's own probe clients, run through the
    same deployment, fill the report's lost and doubled counts: 0 and 0."""
    outcome = deploy_through_traffic(twin, "canary", probes=PROBES)
    report = outcome.report
    assert [s.green_percent for s in report.steps] == [50.0, 100.0]
    assert report.probes is not None
    assert report.probes.settled
    assert (report.lost, report.doubled) == (0, 0)
    assert report.probes.messages.sent > 0
    assert report.probes.pushes.sent > 0
    assert report.probes.publications.sent > 0
    assert all(len(servers) == 2 and servers[1] in report.green for servers in report.probes.servers)
    assert_paced_move(outcome, "canary", probes=PROBES)


def test_a_rollback_during_the_bake_moves_every_green_client_back_and_loses_nothing(twin: TwinCluster) -> None:
    """A rollback during the bake, after the hook moved every client to green: blue's drained servers are
    replaced, production goes back to blue, the same hook moves every client back once, green is stopped with
    none cut, and nothing is lost."""
    production = twin.production
    outcome = deploy_through_traffic(twin, "blue_green", rollback=True)
    report = outcome.report
    rolled = report.rollback
    assert rolled is not None
    assert report.moved == CLIENTS
    assert report.moved_more_than_once == 0
    assert {old for old, _ in rolled.replaced} == outcome.before
    fresh = {new for _, new in rolled.replaced}
    assert rolled.green_connections == CLIENTS
    assert (rolled.moved_back, rolled.moved_back_more_than_once, rolled.cut) == (CLIENTS, 0, 0)
    assert twin.production == production
    assert set(twin.serving()) == fresh
    green = set(report.green)
    for c in outcome.clients:
        first, there, back = c.stats.servers  # moved once to green, once back to a fresh blue server
        assert first in outcome.before
        assert there in green
        assert back in fresh
        assert c.stats.reconnect_frames == 2
        assert c.stats.close_codes[1006] == 0
    assert_nothing_lost_or_doubled(outcome)
    assert report.peak_handshakes_per_s <= PACE_PER_S * (1 + PACE_MARGIN), report.render()
