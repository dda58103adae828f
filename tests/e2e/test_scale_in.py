"""An ECS-like scale-in on the twin stops the server with the fewest connections when servers hold protection.

Three servers hold 12, 6 and 2 clients (each client is placed by its stickiness cookie). With
``scale_in_protection`` on, the two busy servers protect themselves through the twin's ECS agent
endpoint, and the scale-in stops the third: its two clients move once and resume. With the setting off,
the twin's model of ECS's choice (zone balance, then chance) may stop the busiest server: the second
test shows it doing so and how many clients it moves. Run pytest with -s to see the report lines.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest

from stickyws.client.backoff import Backoff
from stickyws.client.connection import StickyClient
from stickyws.localproc import pid_alive
from stickyws.twin.cluster import TwinCluster
from stickyws.twin.kill_report import sticky_cookie
from stickyws.twin.scale_in import ScaleInReport, ecs_choice, fleet
from tests.e2e.support import E2E_SETTINGS, SERVERS, TIME_SCALE, client_session, require_binaries, run

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

#: Clients per server, busiest first.
LOAD = (12, 6, 2)


async def _placed_clients(twin: TwinCluster, names: list[str], prefix: str, session: object) -> list[StickyClient]:
    """LOAD[i] clients stuck to names[i] by their stickiness cookie, all connected."""
    clients = []
    for name, count in zip(names, LOAD, strict=True):
        cookie = sticky_cookie(twin.settings, name)
        assert cookie is not None
        for i in range(count):
            client = StickyClient(
                twin.url, twin.token(f"{prefix}-{name}-{i}"), backoff=Backoff.from_settings(E2E_SETTINGS),
                session=session, rng=random.Random(i),  # type: ignore[arg-type]
            )  # fmt: skip
            client.jar.update(twin.url, [f"{cookie}; Path=/"])
            client.start()
            clients.append(client)
    await asyncio.gather(*(c.wait_connected(10) for c in clients))
    assert Counter(c.stats.servers[0] for c in clients) == dict(zip(names, LOAD, strict=True))
    return clients


async def _scale_in_moving(twin: TwinCluster, clients: list[StickyClient], seed: int) -> ScaleInReport:
    """Scale in by one (in a thread: the clients keep running) and wait until the stopped server's clients are back."""
    report = await asyncio.to_thread(twin.scale_in, 1, seed=seed)
    gone = {s.name for s in report.stopped}
    moved = [c for c in clients if c.stats.servers[0] in gone]
    await asyncio.gather(*(c.wait_for(lambda c: len(c.stats.servers) >= 2 and c.connected, 10) for c in moved))
    return report


def _check_moves(clients: list[StickyClient], stopped: str) -> None:
    """The stopped server's clients moved exactly once and resumed; no other client moved."""
    for c in clients:
        if c.stats.servers[0] == stopped:
            assert len(c.stats.servers) == 2
            assert c.stats.servers[1] != stopped
            assert (c.stats.resumed, c.stats.not_resumed_reconnects) == (1, 0)
        else:
            assert len(c.stats.servers) == 1


def test_scale_in_stops_the_server_with_the_fewest_connections() -> None:
    """With protection on, the 12- and 6-client servers are protected and the scale-in stops the 2-client one."""
    require_binaries()
    # A twin of its own: the fleet's connections decide who is protected, so no other test's clients may count.
    with TwinCluster(E2E_SETTINGS, servers=SERVERS, time_scale=TIME_SCALE) as twin:
        pids = twin.pids()
        names = twin.serving()
        busiest, middle, least = names

        async def scenario() -> tuple[ScaleInReport, list[StickyClient], float]:
            async with client_session() as session:
                clients = await _placed_clients(twin, names, "protected", session)
                try:
                    loaded = time.monotonic()
                    # The agent's state lives in its own thread: poll it (bounded by run()'s timeout).
                    while twin.task_agent.protected_names() != {busiest, middle}:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                    settled_s = time.monotonic() - loaded
                    report = await _scale_in_moving(twin, clients, seed=0)
                finally:
                    await asyncio.gather(*(c.close() for c in clients))
                return report, clients, settled_s

        report, clients, settled_s = run(scenario(), timeout_s=25)
        print(report.render())
        print(
            f"protection settled {settled_s:.2f} s after loading (heartbeat {E2E_SETTINGS['heartbeat_interval_s']} s)"
        )
        assert [s.name for s in report.stopped] == [least]
        assert (report.stopped[0].connections, set(report.protected), report.blocked) == (2, {busiest, middle}, 0)
        assert (report.moved, report.moved_more_than_once, report.cut) == (2, 0, 0)
        _check_moves(clients, least)
    assert [pid for pid in pids if pid_alive(pid)] == []


def test_without_protection_the_ecs_choice_can_stop_the_busiest_server() -> None:
    """With the setting off nothing is protected; a seed for which ECS's choice stops the 12-client server moves 12."""
    require_binaries()
    settings = E2E_SETTINGS.with_overrides({"scale_in_protection": False})
    with TwinCluster(settings, servers=SERVERS, time_scale=TIME_SCALE) as twin:
        pids = twin.pids()
        names = twin.serving()
        busiest = names[0]

        async def scenario() -> tuple[ScaleInReport, list[StickyClient], float]:
            async with client_session() as session:
                clients = await _placed_clients(twin, names, "unprotected", session)
                try:
                    tasks = fleet(twin)
                    picks = [ecs_choice(tasks, 1, random.Random(seed))[0] for seed in range(1000)]
                    busy_share = sum(1 for p in picks if p != names[-1]) / len(picks)
                    seed = picks.index(busiest)
                    report = await _scale_in_moving(twin, clients, seed=seed)
                finally:
                    await asyncio.gather(*(c.close() for c in clients))
                return report, clients, busy_share

        report, clients, busy_share = run(scenario(), timeout_s=25)
        print(report.render())
        print(
            f"without protection: ECS's choice stops a server busier than the least busy for {busy_share:.0%} of seeds"
        )
        assert twin.task_agent.calls == []
        assert [s.name for s in report.stopped] == [busiest]
        assert (report.stopped[0].connections, report.protected) == (12, ())
        assert (report.moved, report.moved_more_than_once, report.cut) == (12, 0, 0)
        assert 0.4 < busy_share < 0.6
        _check_moves(clients, busiest)
    assert [pid for pid in pids if pid_alive(pid)] == []
