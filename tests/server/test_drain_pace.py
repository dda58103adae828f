"""The drain pace: n connections are spread over max(drain_window_s, n / drain_pace_per_s), no two
instructions closer than 1 / pace, until SIGTERM squeezes the rest into shutdown_timeout_s.

The schedule is driven by a fake clock exactly as :class:`stickyws.server.drain_run.Drainer` drives it
(wait until the next step is due, take it); one test runs the real drainer of a served process."""

from __future__ import annotations

import bisect
import itertools
import random

import aiohttp
import pytest

from stickyws.server import drain as drain_plan
from stickyws.server.drain_run import DrainSchedule
from tests.server.helpers import connect, fast, recv_json, run, server


def _follow(schedule: DrainSchedule, start: float, *, sigterm_at: float | None = None) -> list[float]:
    """The moments (fake clock) at which a drainer following ``schedule`` sends each instruction; SIGTERM
    squeezes the plan at ``sigterm_at``."""
    now, sent = start, []
    while (delay := schedule.delay(now)) is not None:
        if sigterm_at is not None and not schedule.sigterm and now + max(delay, 0.0) >= sigterm_at:
            now = sigterm_at
            schedule.squeeze(now)
            continue
        now += max(delay, 0.0)
        schedule.pop()
        sent.append(now)
    return sent


def _most_in_any(sent: list[float], span_s: float) -> int:
    """The most instructions in any half-open interval of ``span_s`` seconds (``sent`` in time order)."""
    return max(bisect.bisect_left(sent, t + span_s - 1e-9) - i for i, t in enumerate(sent))


def _schedule(
    n: int, *, window_s: float, pace: float, seed: int = 1, sigterm: bool = False, start: float = 0.0
) -> DrainSchedule:
    return DrainSchedule(
        [f"c{i}" for i in range(n)], start, drain_window_s=window_s, shutdown_timeout_s=10,
        rng=random.Random(seed), sigterm=sigterm, pace_per_s=pace,
    )  # fmt: skip


def test_a_paced_drain_never_sends_faster_than_the_pace() -> None:
    """1000 connections at 100/s with a 2 s window: spread over 10 s, every instruction sent, consecutive ones
    at least 10 ms apart, at most 100 in any 1 s, and the deadline 10 s + CLOSE_GRACE_S after the start."""
    for seed in range(5):
        schedule = _schedule(1000, window_s=2, pace=100, seed=seed, start=50.0)
        assert schedule.deadline == 50.0 + 10 + drain_plan.CLOSE_GRACE_S
        sent = _follow(schedule, 50.0)
        assert len(sent) == 1000
        assert min(b - a for a, b in itertools.pairwise(sent)) >= 0.01 - 1e-9
        assert _most_in_any(sent, 1.0) == 100
        assert _most_in_any(sent, 0.1) == 10
        assert sent[0] >= 50.0
        assert sent[-1] < 60.0
        assert sent[-1] - sent[0] > 9.9  # the whole paced window is used


def test_the_window_wins_when_it_is_longer_than_the_pace_needs() -> None:
    """10 connections at 100/s with a 2 s window: the window is 2 s (one per 0.2 s slot), and still no two
    instructions closer than 10 ms."""
    for seed in range(20):
        sent = _follow(_schedule(10, window_s=2, pace=100, seed=seed), 0.0)
        assert [int(t / 0.2) for t in sent] == list(range(10))
        assert min(b - a for a, b in itertools.pairwise(sent)) >= 0.01 - 1e-9


def test_pace_zero_is_unbounded_and_the_window_alone_spreads() -> None:
    """drain_pace_per_s=0: 1000 connections over the 2 s window, one per 2 ms slot (no pace stretches it)."""
    assert drain_plan.effective_window_s(2, 10, sigterm=False, n=1000, pace_per_s=0) == 2
    sent = _follow(_schedule(1000, window_s=2, pace=0), 0.0)
    assert len(sent) == 1000
    assert sent[-1] < 2.0
    assert [int(t / 0.002 + 1e-9) for t in sent] == list(range(1000))


def test_sigterm_squeezes_a_paced_drain_into_shutdown_timeout() -> None:
    """SIGTERM 2 s into a 10 s paced drain of 1000: the ~800 left still fit shutdown_timeout_s - grace (9 s)
    at the pace, so they keep it (no two closer than 10 ms) and the deadline moves to 2 s + 8 s + grace; a
    SIGTERM-only drain of 1000 cannot keep the pace in 9 s and spreads evenly over them."""
    schedule = _schedule(1000, window_s=2, pace=100)
    sent = _follow(schedule, 0.0, sigterm_at=2.0)
    assert len(sent) == 1000
    after = [t for t in sent if t >= 2.0]
    assert 795 <= len(after) <= 805
    assert after[-1] < 2.0 + len(after) / 100
    assert min(b - a for a, b in itertools.pairwise(after)) >= 0.01 - 1e-9
    assert schedule.deadline == pytest.approx(2.0 + len(after) / 100 + drain_plan.CLOSE_GRACE_S)
    only = _follow(_schedule(1000, window_s=2, pace=100, sigterm=True), 0.0)
    assert len(only) == 1000
    assert only[-1] < 9.0
    assert min(b - a for a, b in itertools.pairwise(only)) >= 0.009 - 1e-9  # 9 s / 1000: the deadline wins


def test_the_served_drain_follows_the_pace() -> None:
    """A real server with 12 clients, drain_window_s=0.2 and drain_pace_per_s=20: the drain is spread over
    12 / 20 = 0.6 s, not 0.2 s (its times are the real clock's, so the bounds leave room for event-loop lag)."""

    async def go() -> None:
        async with server(fast(drain_window_s=0.2, drain_pace_per_s=20)) as rs, aiohttp.ClientSession() as http:
            clients = [(await connect(http, rs, f"u{i}"))[0] for i in range(12)]
            rs.core.begin_drain("test")
            for ws in clients:
                assert (await recv_json(ws, timeout_s=3))["type"] == "reconnect"
            await rs.core.wait_drained(3)
            times = sorted(at for at, _ in rs.core.reconnects_sent)
            assert len(times) == 12
            run_ = rs.core.drain_run
            assert run_ is not None
            assert 0.5 < times[-1] - run_.started_at < 1.0  # the last slot is [0.55, 0.6) s
            assert _most_in_any(times, 0.25) <= 8  # planned: at most 5 in any 0.25 s; unpaced all 12 in 0.2 s

    run(go())
