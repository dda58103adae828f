"""The ASGI example (examples/asgi) in the twin, with its drain helper and without it, side by side.

Two twins of two example servers each run at once: one with the helper (``--drain on``), one without
(``--drain off``). Real WebSocket clients on loopback echo every ECHO_EVERY_S and reconnect with
jitter whenever their connection ends; each ended connection is recorded with its close code (1006:
no close frame, the cut of the deregistration delay or a crash) and whether a reconnect frame came
first. Run pytest with -s to see the comparison lines.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from stickyws.localproc import pid_alive
from stickyws.twin.cluster import DeregisterReport, TwinCluster
from tests.e2e.support import E2E_SETTINGS, TIME_SCALE, client_session, require_binaries, run

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

APP = Path(__file__).resolve().parents[2] / "examples" / "asgi" / "app.py"
#: No --port: the twin tells the example the port it chose through STICKYWS_PORT (``port`` in its server_env).
SERVER_CMD = [sys.executable, str(APP), "--server-id", "{server_id}", "--redis-url", "{redis_url}"]
SERVERS = 2
CLIENTS = 12
ECHO_EVERY_S = 0.3
#: Reconnect delay of a client: uniform in this range (seconds), plus a reconnect frame's retryAfterMs.
RECONNECT_JITTER_S = (0.05, 0.25)
#: The example is a server of its own: the twin tells it only what it reads (server_env), as the stack does.
SETTINGS = E2E_SETTINGS.with_overrides(
    {"server_mode": "own", "server_env": "port,drain_window_s,ping_interval_s,ping_timeout_s,shutdown_timeout_s"}
)
DELAY_S = float(SETTINGS["deregistration_delay_s"])
WINDOW_S = float(SETTINGS["drain_window_s"])
#: Seconds every client may take to be back on a server (and get an echo from it) after an operation.
MOVE_BOUND_S = 10.0
CUT = aiohttp.WSCloseCode.ABNORMAL_CLOSURE  # 1006: the connection ended without a close frame
SERVICE_RESTART = 1012


@dataclass(frozen=True)
class Ended:
    """One connection that ended: the server that held it, its close code, and whether it was told to reconnect."""

    server: str | None
    code: int
    told: bool
    #: The reconnect frame's ``retryAfterMs``, in seconds (0 without one).
    retry_after_s: float = 0.0
    #: ``time.monotonic()`` when the client saw the end.
    at: float = 0.0


class Fleet:
    """CLIENTS echoing clients on one twin; each reconnects (through HAProxy) whenever its connection ends."""

    def __init__(self, twin: TwinCluster, session: aiohttp.ClientSession, seed: int) -> None:
        self.twin = twin
        self.session = session
        self.rng = random.Random(seed)
        #: The server each client is connected to now (None while it is away).
        self.server: list[str | None] = [None] * CLIENTS
        #: The server of each client's latest echo.
        self.echoed_by: list[str | None] = [None] * CLIENTS
        self.ended: list[Ended] = []
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start every client."""
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(CLIENTS)]

    async def stop(self) -> None:
        """Stop every client and close its connection."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_all_on(self, allowed: Callable[[str], bool], what: str) -> None:
        """Wait until every client is connected to a server ``allowed`` accepts and got an echo from it."""

        def settled() -> bool:
            return all(
                s is not None and allowed(s) and e == s for s, e in zip(self.server, self.echoed_by, strict=True)
            )

        try:
            async with asyncio.timeout(MOVE_BOUND_S), self._changed:
                await self._changed.wait_for(settled)
        except TimeoutError:
            raise AssertionError(f"clients not all {what} within {MOVE_BOUND_S:g} s: on {self.server}") from None

    def end_times(self, server: str) -> list[float]:
        """When each connection ``server`` held ended, in order (``time.monotonic()``)."""
        return sorted(e.at for e in self.ended if e.server == server)

    def held_by(self) -> Counter[str]:
        """How many clients each server holds now."""
        return Counter(s for s in self.server if s is not None)

    def endings(self, server: str | None = None) -> Counter[tuple[int, bool]]:
        """``(close code, told to reconnect)`` of every connection that ended (held by ``server``, if given)."""
        return Counter((e.code, e.told) for e in self.ended if server is None or e.server == server)

    async def _note(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _client(self, i: int) -> None:
        while True:
            try:
                ws = await self.session.ws_connect(self.twin.url, heartbeat=None)
            except (aiohttp.ClientError, OSError, TimeoutError):  # refused while draining, or no server up
                await asyncio.sleep(self.rng.uniform(*RECONNECT_JITTER_S))
                continue
            ended = await self._connection(i, ws)
            self.ended.append(ended)
            self.server[i] = None
            await self._note()
            await asyncio.sleep(self.rng.uniform(*RECONNECT_JITTER_S) + ended.retry_after_s)

    async def _connection(self, i: int, ws: aiohttp.ClientWebSocketResponse) -> Ended:
        """Echo on ``ws`` until it ends; returns how it ended."""
        server, told, retry_after_s = None, False, 0.0
        sender: asyncio.Task[None] | None = None
        try:
            while True:
                message = await ws.receive()
                if message.type is not aiohttp.WSMsgType.TEXT:
                    code = message.data if message.type is aiohttp.WSMsgType.CLOSE else (ws.close_code or CUT)
                    return Ended(server, int(code), told, retry_after_s, time.monotonic())
                body = json.loads(message.data)
                if body["type"] == "connected":
                    server = self.server[i] = body["serverId"]
                    sender = asyncio.create_task(self._echo(ws))
                elif body["type"] == "echo":
                    assert body["serverId"] == server
                    self.echoed_by[i] = server
                elif body["type"] == "reconnect":
                    told, retry_after_s = True, body["retryAfterMs"] / 1000
                await self._note()
        finally:
            if sender is not None:
                sender.cancel()
            await ws.close()

    async def _echo(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        n = 0
        while not ws.closed:
            try:
                await ws.send_str(str(n))
            except (aiohttp.ClientError, ConnectionError, RuntimeError):
                return
            n += 1
            await asyncio.sleep(ECHO_EVERY_S)


def _example_twin(drain: str) -> Iterator[TwinCluster]:
    """A twin of SERVERS example servers with ``--drain drain``, stopped after the module with no process left."""
    require_binaries()
    cmd = [*SERVER_CMD, "--drain", drain]
    with TwinCluster(SETTINGS, servers=SERVERS, time_scale=TIME_SCALE, server_cmd=cmd) as twin:
        pids = twin.pids()
        yield twin
        pids = sorted({*pids, *twin.pids()})
    assert [pid for pid in pids if pid_alive(pid)] == []


@pytest.fixture(scope="module")
def shared_helper_twin() -> Iterator[TwinCluster]:
    """Example servers run with ``--drain on``, shared by the module's tests."""
    yield from _example_twin("on")


@pytest.fixture(scope="module")
def shared_plain_twin() -> Iterator[TwinCluster]:
    """Example servers run with ``--drain off``, shared by the module's tests."""
    yield from _example_twin("off")


def _serving(twin: TwinCluster) -> TwinCluster:
    """``twin`` with exactly SERVERS healthy servers (a test that took one out gets it back)."""
    for _ in range(SERVERS - len(twin.serving())):
        twin.add()
    assert len(twin.serving()) == SERVERS
    return twin


@pytest.fixture
def helper_twin(shared_helper_twin: TwinCluster) -> TwinCluster:
    """Example servers with the drain helper on."""
    return _serving(shared_helper_twin)


@pytest.fixture
def plain_twin(shared_plain_twin: TwinCluster) -> TwinCluster:
    """Example servers with the drain helper off."""
    return _serving(shared_plain_twin)


def _line(label: str, reports: list[DeregisterReport], fleet: Fleet) -> str:
    """One comparison line: connections cut, drain times, and how the clients' connections ended."""
    cut = sum(r.connections_cut for r in reports)
    drained = "/".join(f"{r.drained_s:.1f}" for r in reports)
    return f"{label}: {cut} connections cut, drained in {drained} s, client closes {dict(fleet.endings())}"


def test_deregistration_helper_moves_every_client_without_it_they_are_cut(
    helper_twin: TwinCluster, plain_twin: TwinCluster
) -> None:
    """Deregistering a server: with the helper every client is told and closed with 1012 in the drain window and
    none is cut; without it every client of that server is cut (1006) when the delay runs out."""

    async def scenario() -> tuple[list[tuple[DeregisterReport, int, Fleet]], float]:
        async with client_session() as session:
            fleets = [Fleet(helper_twin, session, 1), Fleet(plain_twin, session, 2)]
            for fleet in fleets:
                fleet.start()
            for fleet in fleets:
                await fleet.wait_all_on(lambda s: True, "connected")
            targets = [fleet.held_by().most_common(1)[0] for fleet in fleets]
            started = time.monotonic()
            reports = await asyncio.gather(
                *(asyncio.to_thread(f.twin.deregister, name) for f, (name, _) in zip(fleets, targets, strict=True))
            )
            for fleet, (name, _) in zip(fleets, targets, strict=True):
                await fleet.wait_all_on(lambda s, gone=name: s != gone, f"moved off {name}")
                await fleet.stop()
            runs = [(r, held, f) for r, (_, held), f in zip(reports, targets, fleets, strict=True)]
            return runs, started

    ((on, on_held, on_fleet), (off, off_held, off_fleet)), started = run(scenario(), timeout_s=45)
    print(f"\n{_line('deregister, helper on ', [on], on_fleet)}\n{_line('deregister, helper off', [off], off_fleet)}")
    assert on_held >= CLIENTS // SERVERS
    assert off_held >= CLIENTS // SERVERS
    # With the helper: every client of that server told to reconnect and closed (1012) before the cut, none cut.
    assert on.connections_cut == 0
    assert on.drained_s < WINDOW_S + 1.0
    assert on_fleet.endings(on.name) == on_fleet.endings() == Counter({(SERVICE_RESTART, True): on_held})
    # ... one in each of on_held equal slots of the drain window: spread over it, not all at once.
    ends = [t - started for t in on_fleet.end_times(on.name)]
    print(f"helper on: closes at {', '.join(f'{t:.2f}' for t in ends)} s")
    assert ends[-1] - ends[0] >= (on_held - 2) / on_held * WINDOW_S - 0.1
    assert ends[-1] < WINDOW_S + 0.5
    # Without it: every client of that server cut when the whole delay ran out.
    assert (off.connections_at_start, off.connections_cut, off.closed_before_cut) == (off_held, off_held, 0)
    assert DELAY_S <= off.drained_s < DELAY_S + 1.0
    assert off_fleet.endings(off.name) == off_fleet.endings() == Counter({(CUT, False): off_held})
    assert (on.exit_code, off.exit_code) == (0, 0)


def test_rolling_deploy_helper_cuts_none_without_it_the_cut_are_counted(
    helper_twin: TwinCluster, plain_twin: TwinCluster
) -> None:
    """A rolling deploy (minimum healthy 100 %): with the helper 0 connections are cut and every client is moved
    with 1012; without it the cut connections (> 0) are exactly the clients' 1006 closes."""

    async def scenario() -> tuple[list[DeregisterReport], list[DeregisterReport], Fleet, Fleet, float]:
        async with client_session() as session:
            on_fleet, off_fleet = Fleet(helper_twin, session, 3), Fleet(plain_twin, session, 4)
            old = {*helper_twin.serving(), *plain_twin.serving()}
            for fleet in (on_fleet, off_fleet):
                fleet.start()
                await fleet.wait_all_on(lambda s: True, "connected")
            started = time.monotonic()
            on, off = await asyncio.gather(
                asyncio.to_thread(helper_twin.rolling_deploy), asyncio.to_thread(plain_twin.rolling_deploy)
            )
            deploy_s = time.monotonic() - started
            for fleet in (on_fleet, off_fleet):
                await fleet.wait_all_on(lambda s: s not in old, "on new servers")
                await fleet.stop()
            return on, off, on_fleet, off_fleet, deploy_s

    on, off, on_fleet, off_fleet, deploy_s = run(scenario(), timeout_s=50)
    print(f"\nboth deploys side by side in {deploy_s:.1f} s")
    print(_line("rolling deploy, helper on ", on, on_fleet))
    print(_line("rolling deploy, helper off", off, off_fleet))
    assert len(on) == len(off) == SERVERS
    # With the helper: nothing cut, every ended connection was told and closed with 1012, every client moved.
    assert [r.connections_cut for r in on] == [0] * SERVERS
    moved = on_fleet.endings()[(SERVICE_RESTART, True)]
    assert moved >= CLIENTS
    assert on_fleet.endings() == Counter({(SERVICE_RESTART, True): moved})
    # Without it: the cut connections are counted, and they are exactly the clients' abrupt closes.
    cut = sum(r.connections_cut for r in off)
    assert cut >= CLIENTS
    assert off_fleet.endings() == Counter({(CUT, False): cut})
    assert [r.exit_code for r in on + off] == [0] * (2 * SERVERS)


def test_after_a_kill_every_client_reconnects_to_another_server(helper_twin: TwinCluster) -> None:
    """SIGKILL of a server: each of its clients sees its connection end without a close frame (1006) and every
    client is back on another server, echoing, within MOVE_BOUND_S."""

    async def scenario() -> tuple[str, int, Fleet, float]:
        async with client_session() as session:
            fleet = Fleet(helper_twin, session, 5)
            fleet.start()
            await fleet.wait_all_on(lambda s: True, "connected")
            victim, held = fleet.held_by().most_common(1)[0]
            killed_at = time.monotonic()
            await asyncio.to_thread(helper_twin.kill, victim)
            await fleet.wait_all_on(lambda s: s != victim, f"moved off {victim}")
            moved_s = time.monotonic() - killed_at
            await fleet.stop()
            return victim, held, fleet, moved_s

    victim, held, fleet, moved_s = run(scenario(), timeout_s=30)
    print(f"\nkill {victim}: {held} clients back on another server and echoing after {moved_s:.2f} s")
    assert held >= CLIENTS // SERVERS
    assert fleet.endings() == Counter({(CUT, False): held})
    assert all(s is not None and s != victim for s in fleet.server)
