"""Blue/green and linear deployments in the twin: weights move new handshakes only, cleanup cuts blue's clients.

Each test starts a small twin of its own (2 blue servers, a dozen reference clients) and stops it,
proving no process is left. Handshake probes (an upgrade request, then the socket closed) stand
for new clients; the stickiness cookie each answer sets names the server that took it.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import os
import random
import threading
from collections.abc import Iterator

import pytest

from stickyws import protocol
from stickyws.client.backoff import Backoff
from stickyws.client.connection import StickyClient
from stickyws.localproc import pid_alive
from stickyws.twin.blue_green import DeployReport, Hook
from stickyws.twin.cluster import TwinCluster
from stickyws.twin.haproxy_config import ALTERNATE_BACKEND, BACKEND
from stickyws.twin.kill_report import served_by
from tests.e2e.support import E2E_SETTINGS, TIME_SCALE, client_session, require_binaries, run

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

BLUE = 2
CLIENTS = 12
#: The twin's bakes for these tests, in seconds (the settings' minutes scaled would be 45 s and 18 s).
BAKE_S = 1.5
STEP_BAKE_S = 2.0
#: Linear steps of 25 %: 25, 50, 75, then 100.
STEP_PERCENT = 25
#: How far a step's share of new handshakes on green may be from its weight (binomial, >= 40 handshakes
#: per step: 0.2 is more than 3 standard deviations at p = 0.5).
SHARE_MARGIN = 0.2
SETTINGS = E2E_SETTINGS.with_overrides({"traffic_step_percent": STEP_PERCENT})


@pytest.fixture
def small_twin() -> Iterator[TwinCluster]:
    """Two reference servers, redis and HAProxy, stopped after the test with none of their processes left."""
    require_binaries()
    lines: list[str] = []
    with TwinCluster(SETTINGS, servers=BLUE, time_scale=TIME_SCALE, log=lines.append) as twin:
        yield twin
        pids = sorted({*twin.pids(), *(p.proc.pid for p in twin.procs.values())})
    assert [pid for pid in pids if pid_alive(pid)] == []


def handshake(twin: TwinCluster, user: str, cookie: str | None = None) -> str | None:
    """One WebSocket upgrade through HAProxy, closed at once: the server that answered 101 (None: no 101)."""
    conn = http.client.HTTPConnection("127.0.0.1", twin.frontend_port, timeout=5.0)
    headers = {
        "Host": "localhost",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": protocol.SUBPROTOCOL,
        "Authorization": f"Bearer {twin.token(user)}",
    }
    if cookie is not None:
        headers["Cookie"] = cookie
    try:
        conn.request("GET", protocol.WS_PATH, headers=headers)
        response = conn.getresponse()
        return served_by(response.headers.get_all("Set-Cookie") or []) if response.status == 101 else None
    finally:
        conn.close()


#: Seconds between two probes (about 100 handshakes/s, less on a busy machine).
PROBE_EVERY_S = 0.01


class Prober:
    """Handshakes in a loop on a thread while a deployment runs (``cookie``: sent with every one)."""

    def __init__(self, twin: TwinCluster, cookie: str | None = None) -> None:
        self.twin = twin
        self.cookie = cookie
        self.answered_by: list[str | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            self.answered_by.append(handshake(self.twin, f"probe-{n}", self.cookie))
            self._stop.wait(PROBE_EVERY_S)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)


def deploy_with_clients(
    twin: TwinCluster, strategy: str, *, hook: Hook | None = None, probe_cookie: str | None = None
) -> tuple[DeployReport, list[StickyClient], set[str], Prober]:
    """Connect CLIENTS clients, deploy ``strategy`` with probes running, wait until every client is back."""
    blue = set(twin.serving())

    async def scenario() -> tuple[DeployReport, list[StickyClient], Prober]:
        async with client_session() as session:
            rng = random.Random(7)
            clients = [
                StickyClient(
                    twin.url,
                    twin.token(f"{strategy}-{i}"),
                    backoff=Backoff.from_settings(SETTINGS),
                    session=session,
                    rng=random.Random(rng.random()),
                )
                for i in range(CLIENTS)
            ]
            for c in clients:
                c.start()
            try:
                await asyncio.gather(*(c.wait_connected(20) for c in clients))
                assert {c.server_id for c in clients} <= blue
                with Prober(twin, probe_cookie) as prober:
                    report = await asyncio.to_thread(
                        twin.deploy, strategy, hook=hook, bake_s=BAKE_S, step_bake_s=STEP_BAKE_S
                    )
                assert isinstance(report, DeployReport)
                green = set(report.green)
                await asyncio.gather(*(c.wait_for(lambda c: c.connected and c.server_id in green, 20) for c in clients))
                return report, clients, prober
            finally:
                await asyncio.gather(*(c.close() for c in clients))

    report, clients, prober = run(scenario(), timeout_s=90)
    print(report.render())
    return report, clients, blue, prober


def test_blue_green_without_a_hook_cuts_every_blue_client_and_sends_new_handshakes_to_green(
    small_twin: TwinCluster,
) -> None:
    """Without a hook every client stays on blue through the shift and the bake and is cut at cleanup,
    while every handshake after the shift, blue cookie or not, lands on green."""
    report, clients, blue, prober = deploy_with_clients(small_twin, "blue_green", probe_cookie="AWSALB=s1")
    green = set(report.green)
    assert set(report.blue) == blue
    assert not green & blue
    assert len(green) == BLUE
    assert [s.green_percent for s in report.steps] == [100.0]
    assert report.blue_connections_at_shift == CLIENTS
    assert report.blue_connections_at_cleanup == CLIENTS
    assert report.cut == CLIENTS
    assert report.moved == 0
    assert report.blue_handshakes_after_shift == 0
    assert report.steps[-1].green_handshakes >= 10
    assert all(c.stats.close_codes[1006] == 1 for c in clients)
    assert all(c.server_id in green for c in clients)
    assert set(small_twin.serving()) == green
    assert [s.name for s in report.stages] == ["scale up", "production traffic shift", "bake", "cleanup"]
    # probes carried s1's cookie: before the shift s1 answered them, after it green did
    servers = [s for s in prober.answered_by if s is not None]
    first_green = next(i for i, s in enumerate(servers) if s in green)
    assert set(servers[:first_green]) == {"s1"}
    assert set(servers[first_green:]) <= green
    assert len(servers[first_green:]) >= 10


def test_linear_steps_send_the_weighted_share_of_new_handshakes_to_green(small_twin: TwinCluster) -> None:
    """Each linear step of 25 % sends that share of new handshakes to green (within SHARE_MARGIN), the last
    step all of them; blue's clients are cut at cleanup."""
    report, _, _, _ = deploy_with_clients(small_twin, "linear")
    assert [s.green_percent for s in report.steps] == [25.0, 50.0, 75.0, 100.0]
    for step in report.steps[:-1]:
        assert step.blue_handshakes + step.green_handshakes >= 40, step
        assert step.green_share is not None
        assert abs(step.green_share - step.green_percent / 100) <= SHARE_MARGIN, step
    assert report.steps[-1].blue_handshakes == 0
    assert report.steps[-1].green_handshakes >= 10
    assert report.cut == CLIENTS


def test_blue_green_with_a_drain_notice_hook_moves_every_client_and_cuts_none(small_twin: TwinCluster) -> None:
    """A hook that sends blue's servers the drain notice after the shift moves every client to green once,
    with no connection cut at cleanup and no 1006; the next deployment goes back to the first backend alike."""

    def drain_blue(twin: TwinCluster, blue: tuple[str, ...]) -> None:
        for name in blue:
            twin.publish_drain_notice(name)

    report, clients, _, _ = deploy_with_clients(small_twin, "blue_green", hook=drain_blue)
    assert report.hooked
    assert report.blue_connections_at_shift == CLIENTS
    assert report.cut == 0
    assert report.blue_connections_at_cleanup == 0
    assert report.moved == CLIENTS
    assert report.moved_more_than_once == 0
    assert report.blue_handshakes_after_shift == 0
    assert all(c.stats.close_codes[1006] == 0 for c in clients)
    assert all(c.stats.reconnect_frames == 1 for c in clients)
    assert [s.name for s in report.stages] == ["scale up", "production traffic shift", "hook", "bake", "cleanup"]
    assert small_twin.production == ALTERNATE_BACKEND

    again, clients, blue, _ = deploy_with_clients(small_twin, "blue_green", hook=drain_blue)
    assert blue == set(report.green)
    assert (again.cut, again.moved, again.blue_handshakes_after_shift) == (0, CLIENTS, 0)
    assert all(c.stats.close_codes[1006] == 0 for c in clients)
    assert small_twin.production == BACKEND
