"""The Node examples in the twin: with the drain notice their clients move before the ALB's cut, without it
they are cut; after a SIGKILL they reconnect elsewhere.

``examples/node-ws`` (``ws``) and ``examples/node-socketio`` (Socket.IO) both use
``examples/node-drain/stickyws-drain.js``; ``DRAIN_NOTICES=off`` makes them ignore the notice, which the twin
publishes in either case exactly as the AWS drain notifier does. The clients are real ones on loopback that
reconnect on their own: an aiohttp WebSocket client that understands the example's ``reconnect`` frame, and
python-socketio's client (polling first, then the upgrade, with a cookie jar: the twin's cookie stickiness
keeps its polling requests on one server). Each run prints its numbers (pytest -s shows them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import aiohttp
import pytest
import redis
import socketio

from stickyws import keys, protocol
from stickyws.keys import DrainNotice
from stickyws.localproc import RedisServer, free_port, pid_alive, start_process, stop_pid, wait_for_http
from stickyws.twin.cluster import DeregisterReport, TwinCluster
from tests.e2e.support import E2E_SETTINGS, TIME_SCALE, client_session, require_binaries, run

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: The e2e settings with a shorter stop: the ALB cuts 2 s after the notice; the examples spread over 1 s. The
#: examples are servers of their own: the twin tells them only what they read (server_env), as the stack does.
SETTINGS = E2E_SETTINGS.with_overrides(
    {
        "deregistration_delay_s": 2,
        "drain_window_s": 1,
        "shutdown_timeout_s": 1,
        "stop_timeout_s": 2,
        "server_mode": "own",
        "server_env": "drain_window_s,deregistration_delay_s,ping_interval_s",
    }
)
DELAY_S = float(SETTINGS["deregistration_delay_s"])
WINDOW_S = float(SETTINGS["drain_window_s"])
CLIENTS = 10
SERVERS = 2
#: Bound on every wait for the clients to be connected (and answered) again.
SETTLE_S = 10.0
#: A WebSocket client's pause before it tries again after a refused handshake (upper bound of its jitter).
RETRY_S = 0.25
#: What a cut WebSocket connection ends with: no close frame.
CUT = aiohttp.WSCloseCode.ABNORMAL_CLOSURE


def _server_cmd(example: str) -> list[str]:
    script = EXAMPLES / example / "server.js"
    return [
        *("node", str(script), "--host", "127.0.0.1", "--port", "{port}"),
        *("--server-id", "{server_id}", "--redis-url", "{redis_url}"),
    ]


def _require_example(example: str) -> None:
    """Fail (not skip) with the fix when node or the example's modules are missing."""
    require_binaries()
    assert shutil.which("node") is not None, "node not found: install Node.js 20 (the CDK CLI needs it too)"
    installed = EXAMPLES / example / "node_modules" / ".package-lock.json"
    assert installed.is_file(), f"run make setup (npm ci in examples/{example})"


class Client(Protocol):
    """What the scenarios need of a reconnecting client, WebSocket or Socket.IO."""

    #: The server whose echo came back on the open connection (None while not connected).
    current: str | None
    #: Connections that ended without the server's reconnect instruction (cut, or the server died).
    cut: int
    #: Reconnect instructions received (``reconnect`` frame / ``drain`` event), and when (monotonic seconds).
    told: int
    told_at: list[float]
    #: Server of each connection, in order.
    servers: list[str]
    #: Connection attempts the load balancer refused (503: no healthy target for the attempt).
    refused: int

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass
class WsClient:
    """A WebSocket client of examples/node-ws: echoes once per connection, reconnects after every end."""

    url: str
    session: aiohttp.ClientSession
    current: str | None = None
    cut: int = 0
    told: int = 0
    told_at: list[float] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)
    refused: int = 0
    #: Close code of each ended connection (1006: no close frame).
    closes: list[int] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                ws = await self.session.ws_connect(self.url, heartbeat=None)
            except aiohttp.ClientError as exc:
                self.refused += isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status == 503
                await asyncio.sleep(random.uniform(0, RETRY_S))
                continue
            retry_ms = 0
            try:
                with contextlib.suppress(ConnectionError):  # a server that closes at once: its close is read below
                    await ws.send_str(json.dumps({"echo": len(self.servers)}))
                async for message in ws:
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        break
                    frame = json.loads(message.data)
                    if frame.get("type") == "hello":
                        self.servers.append(frame["serverId"])
                    elif frame.get("type") == "reconnect":
                        self.told += 1
                        self.told_at.append(time.monotonic())
                        retry_ms = int(frame["retryAfterMs"])
                    elif "echo" in frame:
                        self.current = self.servers[-1]
                code = ws.close_code or CUT
            finally:
                self.current = None
                await ws.close()
            self.closes.append(code)
            self.cut += code == CUT
            await asyncio.sleep(retry_ms / 1000)


class SioClient:
    """python-socketio's client on examples/node-socketio: polling, then the upgrade; reconnects on its own.

    ``current`` is set once the connection answered an echo over the upgraded WebSocket.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.current: str | None = None
        self.cut = 0
        self.told = 0
        self.told_at: list[float] = []
        self.servers: list[str] = []
        self.refused = 0
        #: 400 answers (a polling request that reached a server that does not hold its session).
        self.bad_requests = 0
        self._told_now = False
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(self._on_request_end)
        # unsafe=True: keep the cookie an IP-address host (127.0.0.1) sets, as a browser does; quote_cookie=False:
        # send it back as it was set (the twin's AWSALB can hold '/', which a quoting jar wraps in quotes that
        # HAProxy does not read as its cookie, so polling requests would lose their server).
        jar = aiohttp.CookieJar(unsafe=True, quote_cookie=False)
        self.http = aiohttp.ClientSession(cookie_jar=jar, trace_configs=[trace])
        self.sio = socketio.AsyncClient(
            http_session=self.http, reconnection_delay=0.25, reconnection_delay_max=1, randomization_factor=0.5
        )
        self.sio.on("hello", self._on_hello)
        self.sio.on("drain", self._on_drain)
        self.sio.on("disconnect", self._on_disconnect)

    async def _on_request_end(self, _: Any, __: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
        self.refused += params.response.status == 503
        self.bad_requests += params.response.status == 400

    async def _on_hello(self, data: dict[str, Any]) -> None:
        self.servers.append(data["serverId"])
        self._told_now = False
        for _ in range(int(SETTLE_S / 0.05)):  # the upgrade completes in the background after connect
            if self.sio.transport() == "websocket" or not self.sio.connected:
                break
            await asyncio.sleep(0.05)
        with contextlib.suppress(socketio.exceptions.SocketIOError, TimeoutError):
            answer = await self.sio.call("echo", {"n": len(self.servers)}, timeout=5)
            if answer["transport"] == "websocket":
                self.current = answer["server"]

    async def _on_drain(self, data: dict[str, Any]) -> None:
        self.told += 1
        self.told_at.append(time.monotonic())
        self._told_now = True

    async def _on_disconnect(self, reason: str) -> None:
        self.current = None
        self.cut += not self._told_now

    async def start(self) -> None:
        await self.sio.connect(self.url, transports=["polling", "websocket"], wait_timeout=SETTLE_S)

    async def close(self) -> None:
        await self.sio.disconnect()
        await self.http.close()


@dataclass(frozen=True)
class Phase:
    """What one twin operation did to the clients: the twin's reports and the clients' own counts."""

    name: str
    reports: tuple[DeregisterReport, ...]
    held: int
    cut: int
    told: int
    refused: int
    #: Seconds from the first reconnect instruction to the last (0 when fewer than two).
    told_span_s: float

    def line(self, label: str) -> str:
        twin = "; ".join(r.render() for r in self.reports) or "no deregistration"
        return (
            f"{label} {self.name}: {self.held} clients on the stopped server(s): {self.cut} cut, {self.told} told to "
            f"reconnect over {self.told_span_s:.2f} s, {self.refused} refused attempts | twin: {twin}"
        )


async def _settled(twin: TwinCluster, clients: list[Client]) -> None:
    """Wait until every client is connected (and answered) on a server that is serving."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        serving = set(twin.serving())
        if all(c.current in serving for c in clients):
            return
        assert time.monotonic() < deadline, (
            f"clients not settled on {sorted(serving)} after {SETTLE_S:g} s: {[c.current for c in clients]}"
        )
        await asyncio.sleep(0.05)


async def _phase(
    twin: TwinCluster,
    clients: list[Client],
    name: str,
    stopping: set[str],
    action: Callable[[], list[DeregisterReport]],
) -> Phase:
    """Run ``action`` (stopping the servers in ``stopping``) in a thread and count what the clients saw."""
    held = sum(c.current in stopping for c in clients)

    def totals() -> tuple[int, int, int]:
        return sum(c.cut for c in clients), sum(c.told for c in clients), sum(c.refused for c in clients)

    before = totals()
    started = time.monotonic()
    reports = await asyncio.to_thread(action)
    await _settled(twin, clients)
    cut, told, refused = (after - was for after, was in zip(totals(), before, strict=True))
    told_at = [t for c in clients for t in c.told_at if t >= started]
    span_s = max(told_at) - min(told_at) if len(told_at) > 1 else 0.0
    return Phase(name, tuple(reports), held, cut, told, refused, span_s)


def _busiest(clients: list[Client]) -> str:
    counts: dict[str, int] = {}
    for c in clients:
        assert c.current is not None
        counts[c.current] = counts.get(c.current, 0) + 1
    return max(counts, key=lambda name: counts[name])


@contextlib.contextmanager
def _example_twin(example: str, *, drain: bool) -> Iterator[TwinCluster]:
    """A twin of SERVERS example servers, stopped afterwards with none of its processes left."""
    _require_example(example)
    env = {"DRAIN_NOTICES": "on" if drain else "off"}
    command = _server_cmd(example)
    with TwinCluster(SETTINGS, servers=SERVERS, time_scale=TIME_SCALE, server_cmd=command, server_env=env) as twin:
        pids = set(twin.pids())
        try:
            yield twin
        finally:
            pids |= set(twin.pids())
    assert [pid for pid in pids if pid_alive(pid)] == []


def _make_clients(example: str, twin: TwinCluster, session: aiohttp.ClientSession) -> list[Client]:
    if example == "node-ws":
        return [WsClient(twin.url, session) for _ in range(CLIENTS)]
    return [SioClient(twin.http_url) for _ in range(CLIENTS)]


def _with_clients(
    example: str, twin: TwinCluster, scenario: Callable[[list[Client]], Awaitable[list[Phase]]]
) -> tuple[list[Phase], list[Client]]:
    """Connect CLIENTS clients through ``twin``, run ``scenario`` on them once settled, close them."""

    async def body() -> tuple[list[Phase], list[Client]]:
        async with client_session() as session:
            clients = _make_clients(example, twin, session)
            try:
                await asyncio.gather(*(c.start() for c in clients))
                await _settled(twin, clients)
                return await scenario(clients), clients
            finally:
                await asyncio.gather(*(c.close() for c in clients))

    return run(body(), timeout_s=60)


def _deregister_then_deploy(example: str, *, drain: bool) -> tuple[list[Phase], list[Client]]:
    """Deregister the busiest server, then deploy (replace the other), clients connected throughout."""
    with _example_twin(example, drain=drain) as twin:

        async def scenario(clients: list[Client]) -> list[Phase]:
            victim = _busiest(clients)
            deregister = await _phase(twin, clients, "deregister", {victim}, lambda: [twin.deregister(victim)])
            old = set(twin.serving())
            deploy = await _phase(twin, clients, "deploy", old, twin.rolling_deploy)
            return [deregister, deploy]

        return _with_clients(example, twin, scenario)


@pytest.mark.parametrize("example", ["node-ws", "node-socketio"])
def test_drain_notice_moves_every_client_before_the_cut_and_without_it_they_are_cut(example: str) -> None:
    """At deregister and deploy, the example moves all its clients within the drain window (0 cut); with
    DRAIN_NOTICES=off the same clients are all cut at the end of the delay."""
    with_drain, clients_on = _deregister_then_deploy(example, drain=True)
    without, clients_off = _deregister_then_deploy(example, drain=False)
    for on, off in zip(with_drain, without, strict=True):
        print(f"\n{on.line(f'{example} drain on ')}\n{off.line(f'{example} drain off')}")

    for phase in with_drain:
        assert phase.held > 0
        assert (phase.cut, phase.told) == (0, phase.held)
        assert [(r.connections_cut, r.closed_before_cut) for r in phase.reports] == [(0, phase.held)]
        assert all(r.drained_s < DELAY_S for r in phase.reports)  # every client moved before the cut
        # Spread over the window, not all at once: one slot of WINDOW_S / held each, so the first and the
        # last instruction are at least (held - 2) slots apart (half of that allowed for a busy machine).
        assert (phase.held - 2) / phase.held * WINDOW_S / 2 <= phase.told_span_s < WINDOW_S + 0.5
        assert all(r.exit_code == 0 for r in phase.reports)
    for phase in without:
        assert phase.held > 0
        assert (phase.cut, phase.told) == (phase.held, 0)
        assert [(r.connections_cut, r.closed_before_cut) for r in phase.reports] == [(phase.held, 0)]
        assert all(DELAY_S <= r.drained_s < DELAY_S + 1.0 for r in phase.reports)
    assert [p.held for p in with_drain][1] == CLIENTS  # the deploy replaced the one server all clients were on
    if example == "node-ws":
        ws_on = [code for c in clients_on if isinstance(c, WsClient) for code in c.closes]
        ws_off = [code for c in clients_off if isinstance(c, WsClient) for code in c.closes]
        assert set(ws_on) == {protocol.CLOSE_SERVICE_RESTART}
        assert set(ws_off) == {CUT}
    else:
        # Every polling request of every session (the first ones and the reconnects) reached its own server.
        assert [c.bad_requests for c in clients_on + clients_off if isinstance(c, SioClient)] == [0] * 2 * CLIENTS


@pytest.mark.parametrize("example", ["node-ws", "node-socketio"])
def test_sigkill_cuts_the_clients_and_they_reconnect_to_the_other_server(example: str) -> None:
    """After a SIGKILL every client of the killed server is cut (no instruction) and reconnects to the survivor."""
    with _example_twin(example, drain=True) as twin:

        async def scenario(clients: list[Client]) -> list[Phase]:
            victim = _busiest(clients)

            def kill() -> list[DeregisterReport]:
                twin.kill(victim)
                return []

            phase = await _phase(twin, clients, "kill", {victim}, kill)
            moved = [c for c in clients if victim in c.servers]
            assert all(c.servers[-1] != victim and c.current == c.servers[-1] for c in moved)
            return [phase]

        [phase], clients = _with_clients(example, twin, scenario)
        survivor = twin.serving()
    print(f"\n{phase.line(example)}")
    assert phase.held > 0
    assert (phase.cut, phase.told) == (phase.held, 0)
    assert {c.servers[-1] for c in clients} == set(survivor)


def test_a_notice_stored_before_the_server_started_moves_its_first_client_at_once(redis_url: str) -> None:
    """A drain notice SET before the server subscribed (no PUBLISH it could hear) is read at start: a client
    gets hello, the reconnect frame and close 1012."""
    _require_example("node-ws")
    registry = redis.Redis.from_url(redis_url)
    notice = DrainNotice(server_id="late-1", source="test", reason="stored before start")
    registry.set(keys.drain_key("late-1"), notice.to_json(), ex=keys.DRAIN_NOTICE_TTL_S)
    with _standalone_ws("late-1", redis_url) as port:
        frames, code = run(_one_connection(port), timeout_s=10)
    registry.close()
    assert [f["type"] for f in frames] == ["hello", "reconnect"]
    assert frames[1]["serverId"] == "late-1"
    assert code == protocol.CLOSE_SERVICE_RESTART


def test_a_notice_stored_while_the_subscription_was_down_is_read_after_the_reconnect(
    make_redis: Callable[[], RedisServer],
) -> None:
    """A notice SET (not published) in the same transaction that drops the server's subscriber connection is
    read when ioredis reconnects: the connected client is told to reconnect."""
    _require_example("node-ws")
    redis_url = make_redis().url  # its own: the transaction drops every subscriber connection of the server
    registry = redis.Redis.from_url(redis_url)
    notice = DrainNotice(server_id="resub-1", source="test", reason="stored while unsubscribed")

    async def scenario(port: int) -> tuple[list[dict[str, Any]], int]:
        async with client_session() as session:
            ws = await session.ws_connect(f"ws://127.0.0.1:{port}/", heartbeat=None)
            hello = json.loads((await ws.receive(timeout=5)).data)
            pipe = registry.pipeline(transaction=True)
            pipe.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            pipe.set(keys.drain_key("resub-1"), notice.to_json(), ex=keys.DRAIN_NOTICE_TTL_S)
            killed, _ = await asyncio.to_thread(pipe.execute)
            assert killed == 1  # the server's one subscriber connection
            frames = [hello]
            async for message in ws:
                frames.append(json.loads(message.data))
            return frames, ws.close_code or CUT

    with _standalone_ws("resub-1", redis_url) as port:
        frames, code = run(scenario(port), timeout_s=10)
    registry.close()
    assert [f["type"] for f in frames] == ["hello", "reconnect"]
    assert code == protocol.CLOSE_SERVICE_RESTART


@contextlib.contextmanager
def _standalone_ws(server_id: str, redis_url: str) -> Iterator[int]:
    """examples/node-ws alone on a free port (no twin), stopped afterwards; yields its port once healthy
    and subscribed."""
    port = free_port()
    env = {
        "PATH": str(Path(shutil.which("node") or "node").parent),
        "STICKYWS_DRAIN_WINDOW_S": str(WINDOW_S),
        "STICKYWS_DEREGISTRATION_DELAY_S": str(DELAY_S),
        "STICKYWS_PING_INTERVAL_S": "1",
    }
    args = [a.replace("{port}", str(port)) for a in _server_cmd("node-ws")]
    args = [a.replace("{server_id}", server_id).replace("{redis_url}", redis_url) for a in args]
    proc = start_process(args, env=env)
    try:
        wait_for_http(port, "/health", 10, proc=proc)
        _wait_subscribed(redis_url, keys.drain_key(server_id))
        yield port
    finally:
        stop_pid(proc, timeout_s=3)
    assert not pid_alive(proc.pid)


def _wait_subscribed(redis_url: str, channel: str, timeout_s: float = 5.0) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + timeout_s
        while client.pubsub_numsub(channel)[0][1] < 1:
            assert time.monotonic() < deadline, f"nothing subscribed to {channel} after {timeout_s:g} s"
            time.sleep(0.02)
    finally:
        client.close()


async def _one_connection(port: int) -> tuple[list[dict[str, Any]], int]:
    """Every frame of one connection to 127.0.0.1:``port`` until it closes, and its close code."""
    async with client_session() as session:
        ws = await session.ws_connect(f"ws://127.0.0.1:{port}/", heartbeat=None)
        frames = [json.loads(message.data) async for message in ws]
        return frames, ws.close_code or CUT
