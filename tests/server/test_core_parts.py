"""The server core's parts driven without sockets or real time: a fake clock, fake transports, the
in-memory registry (the drain schedule and run, the heartbeat's refreshes, slow consumers, gap fill)."""

from __future__ import annotations

import asyncio
import io
import json
import random
from typing import Any

import pytest

from stickyws import protocol
from stickyws.registry.memory import InMemoryRegistry
from stickyws.server.auth import TokenVerifier
from stickyws.server.core import Connection, ServerCore, SharedFrame
from stickyws.server.delivery import TopicCursor
from stickyws.server.drain import CLOSE_GRACE_S
from stickyws.server.drain_run import DrainSchedule
from stickyws.server.metrics import Metrics
from stickyws.server.session import SessionRecord, SessionState
from stickyws.server.upkeep import heartbeat_body
from tests.server.helpers import SECRET, eventually, fast, run


class FakeClock:
    """Monotonic seconds that move only when a test sets ``now``."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeTransport:
    """Records frames and closes; ``unsent`` is what every write reports as still queued."""

    def __init__(self, unsent: int = 0) -> None:
        self.frames: list[str] = []
        self.closes: list[tuple[int, str]] = []
        self.unsent = unsent

    def write(self, text: str) -> int:
        self.frames.append(text)
        return self.unsent

    def write_shared(self, frame: SharedFrame) -> int:
        return self.write(frame.text)

    async def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))


def make_core(clock: FakeClock, **overrides: Any) -> ServerCore:
    """A core on the in-memory registry (reading ``clock``), never started: its parts are driven directly."""
    return ServerCore(
        fast(**overrides), server_id="s1", registry=InMemoryRegistry(clock), verifier=TokenVerifier(SECRET, "stickyws"),
        metrics=Metrics("test", out=io.StringIO()), rng=random.Random(7), registry_kind="memory", clock=clock,
    )  # fmt: skip


def add_conn(core: ServerCore, user: str, refreshed_at: float, transport: FakeTransport | None = None) -> Connection:
    """Register a connection of ``user`` on ``core`` as if its handshake had opened it."""
    session = SessionState.from_record(SessionRecord(f"sess-{user}", user))
    conn = Connection(f"c-{user}", session, transport or FakeTransport(), None, refreshed_at, refreshed_at)
    core.connections[conn.conn_id] = conn
    core.by_user[user] = conn
    return conn


def test_drain_schedule_spreads_steps_one_per_slot_and_the_deadline_follows_the_window() -> None:
    """Four connections over a 4 s window: one step per 1 s slot from the start, each due exactly at its time,
    and the deadline is the window plus the close grace."""
    schedule = DrainSchedule(
        ["a", "b", "c", "d"], 100.0, drain_window_s=4, shutdown_timeout_s=30, rng=random.Random(1), sigterm=False
    )
    assert schedule.deadline == 100.0 + 4 + CLOSE_GRACE_S
    taken = []
    while (delay := schedule.delay(100.0)) is not None:
        step = schedule.steps[0]
        assert delay == pytest.approx(step.at_s)  # seen from the start, the next step is due at its own time
        assert schedule.delay(100.0 + step.at_s) == 0.0
        taken.append(schedule.pop())
    assert sorted(s.conn_id for s in taken) == ["a", "b", "c", "d"]
    assert [int(s.at_s) for s in taken] == [0, 1, 2, 3]


def test_drain_schedule_squeezes_what_is_left_into_the_sigterm_deadline() -> None:
    """SIGTERM at 101.5 s with shutdown_timeout_s=3: the steps left are spread over the 2 s the deadline leaves
    (minus the close grace) from then, and the deadline moves earlier, never later."""
    schedule = DrainSchedule(
        [f"c{i}" for i in range(10)], 100.0, drain_window_s=10, shutdown_timeout_s=3, rng=random.Random(2),
        sigterm=False,
    )  # fmt: skip
    assert schedule.deadline == 111.0
    taken = {schedule.pop().conn_id, schedule.pop().conn_id}
    schedule.squeeze(101.5)
    assert schedule.sigterm
    assert schedule.deadline == 101.5 + (3 - CLOSE_GRACE_S) + CLOSE_GRACE_S
    assert len(schedule.steps) == 8
    assert taken.isdisjoint(s.conn_id for s in schedule.steps)
    assert all(0 <= step.at_s < 3 - CLOSE_GRACE_S for step in schedule.steps)
    while (delay := schedule.delay(101.5)) is not None:
        assert delay < 3 - CLOSE_GRACE_S  # due within the 2 s left, counted from the SIGTERM
        schedule.pop()
    assert schedule.delay(101.5) is None


def test_drain_run_follows_the_clock_it_is_given_for_its_steps_and_its_deadline() -> None:
    """With a fake clock: once it is past every step the drain tells every connection to reconnect (``reconnect``
    frame, close 1012) at that time; it waits for the rest to leave until the clock passes the deadline, then
    closes those still registered ("drain deadline"), long before the real 60 s window."""

    async def go() -> None:
        clock = FakeClock(1000.0)
        core = make_core(clock, drain_window_s=60)
        transports = {u: FakeTransport() for u in ("ann", "bob", "cai")}
        conns = {u: add_conn(core, u, 1000.0, t) for u, t in transports.items()}
        began = asyncio.get_running_loop().time()
        core.begin_drain("test")
        run_ = core.drain_run
        assert run_ is not None
        assert run_.started_at == 1000.0
        clock.now = 1060.5  # every step is due (the window is 60 s); the deadline (61 s) is not
        await eventually(lambda: all(t.closes for t in transports.values()))
        assert sorted(conn_id for _, conn_id in core.reconnects_sent) == ["c-ann", "c-bob", "c-cai"]
        assert {at for at, _ in core.reconnects_sent} == {1060.5}
        for t in transports.values():
            assert json.loads(t.frames[-1])["type"] == "reconnect"
            assert t.closes == [(protocol.CLOSE_SERVICE_RESTART, "server draining")]
        await core.on_closed(conns["ann"])  # ann's client left; bob and cai did not
        assert not run_.done.is_set()
        clock.now = 1061.5
        await asyncio.wait_for(run_.done.wait(), 3)
        await eventually(lambda: len(transports["bob"].closes) == len(transports["cai"].closes) == 2)
        assert transports["bob"].closes[-1] == (protocol.CLOSE_SERVICE_RESTART, "drain deadline")
        assert transports["cai"].closes[-1] == (protocol.CLOSE_SERVICE_RESTART, "drain deadline")
        assert transports["ann"].closes == [(protocol.CLOSE_SERVICE_RESTART, "server draining")]
        assert asyncio.get_running_loop().time() - began < 10.0
        await core.close()

    run(go())


def test_heartbeat_refreshes_only_the_routes_idle_for_a_third_of_the_shorter_ttl() -> None:
    """At 60 s with routing_ttl_s=60 and session_ttl_s=90, a beat refreshes the route last refreshed at 0 s
    (older than 60 - 60/3 = 40 s) and stamps it with the clock, and leaves the one refreshed at 50 s alone."""

    async def go() -> None:
        clock = FakeClock(0.0)
        core = make_core(clock, routing_ttl_s=60, session_ttl_s=90)
        old = add_conn(core, "old", 0.0)
        recent = add_conn(core, "recent", 50.0)
        clock.now = 60.0
        assert core.upkeep.idle(core.connections.values(), 60.0) == [old]
        await core.upkeep.beat()
        assert (old.route_refreshed_at, recent.route_refreshed_at) == (60.0, 50.0)
        assert await core.registry.owner("old") == "s1"
        assert await core.registry.owner("recent") is None  # never refreshed: the registry never heard of it
        await core.close()

    run(go())


def test_heartbeat_body_is_compact_json_with_the_status_and_wall_time() -> None:
    """The heartbeat value names the server, its connections, its status, the time in ms and its revision."""
    assert (
        heartbeat_body("s1", 3, "draining", 1234)
        == '{"serverId":"s1","connections":3,"status":"draining","ts":1234,"revision":""}'
    )
    assert heartbeat_body("s1", 0, "serving", 5, "web:7").endswith(',"ts":5,"revision":"web:7"}')


def test_a_write_past_max_output_bytes_closes_a_slow_consumer_with_1013_and_drops_its_topics() -> None:
    """A write that leaves more than max_output_bytes unsent counts a slow consumer, forgets the connection's
    topics and closes it with 1013; nothing more is written to it."""

    async def go() -> None:
        clock = FakeClock(0.0)
        core = make_core(clock, max_output_bytes=131072)
        transport = FakeTransport(unsent=131073)
        conn = add_conn(core, "slow", 0.0, transport)
        conn.topics["news"] = TopicCursor(0, "")
        await core.hub.add(conn, ["news"])
        core.outbound.write(conn, "first")
        assert core.metrics.counters["SlowConsumerCloses"] == 1
        assert "news" not in core.hub.topic_conns
        assert conn.topics == {}
        await eventually(lambda: transport.closes == [(protocol.CLOSE_TRY_AGAIN_LATER, "slow consumer")])
        core.outbound.write(conn, "second")
        assert transport.frames == ["first"]
        await core.close()

    run(go())


def test_a_held_message_is_written_after_a_gap_for_the_seq_the_registry_lost() -> None:
    """Seq 3 arriving after seq 1 is held; the fill reads seq 2 from the registry, which lost it, so the socket
    gets a gap for 2 and then seq 3, in that order."""

    async def go() -> None:
        clock = FakeClock(0.0)
        core = make_core(clock)
        transport = FakeTransport()
        conn = add_conn(core, "ann", 0.0, transport)
        stored = SessionRecord("sess-ann", "ann", last_server_seq=3, outbox=((3, '"c"'),), out_first=3)
        assert await core.registry.reconcile("s1", [stored], routing_ttl_s=60, session_ttl_s=60) == []
        core.outbound.offer(conn, 1, '"a"')
        core.outbound.offer(conn, 3, '"c"')
        assert transport.frames == [protocol.message_raw(1, '"a"')]  # 3 waits behind the gap
        assert core.outbound.missing(conn) == (2, 2, True)
        await eventually(lambda: len(transport.frames) == 3)
        assert transport.frames[1:] == [protocol.gap(2, 2), protocol.message_raw(3, '"c"')]
        assert core.outbound.missing(conn) is None
        assert conn.cursor.sent == 3
        await core.close()

    run(go())
