"""The migration planner and the hook's answers, with a fake clock (no I/O)."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest

from stickyws.migration import (
    DETAILS_KEY,
    Migration,
    MigrationConfig,
    MigrationState,
    Sent,
    Slot,
    decide,
    plan,
)

T0 = 1_767_222_000.0
CONFIG = MigrationConfig(pace_per_s=10, window_s=600, drain_window_s=60, done_connections=5)


class FakeClock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self, now_s: float = T0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def peak_rate(slots: Iterable[Slot], drain_window_s: float, sent: Iterable[Sent] = ()) -> float:
    """Highest sum of reconnect rates in flight at any moment (the load only rises at a start)."""
    spans = [(s.at_s, s.connections / drain_window_s) for s in slots]
    spans += [(s.at_s, s.connections / drain_window_s) for s in sent]
    return max(
        (sum(rate for start, rate in spans if start <= moment < start + drain_window_s) for moment, _ in spans),
        default=0.0,
    )


def test_plan_keeps_the_fleet_under_the_pace() -> None:
    """Three servers of 5 reconnects/s each under a pace of 10: two start now, the third when the first window ends."""
    slots = plan({"a": 300, "b": 300, "c": 300}, now_s=T0, pace_per_s=10, drain_window_s=60)

    assert [(s.server_id, s.at_s - T0) for s in slots] == [("a", 0), ("b", 0), ("c", 60)]
    assert peak_rate(slots, 60) == 10


def test_plan_of_a_mixed_fleet_never_exceeds_the_pace() -> None:
    """A fleet of uneven servers is planned so that at no moment the in-flight rates sum above the pace."""
    servers = {f"s{i:02d}": n for i, n in enumerate([30, 450, 120, 0, 600, 75, 310, 280, 90, 599, 12, 240])}
    slots = plan(servers, now_s=T0, pace_per_s=10, drain_window_s=60)

    assert sorted(s.server_id for s in slots) == sorted(servers)
    assert peak_rate(slots, 60) <= 10 + 1e-9
    assert not any(s.over_pace for s in slots)
    # Not a trivial plan that sends everything at once: the sum of all rates (~47/s) is far above the pace.
    assert sum(servers.values()) / 60 > 40
    assert max(s.at_s for s in slots) - T0 >= 240


def test_plan_goes_fewest_connections_first() -> None:
    """Servers are told in rising order of connections (ties by id), each no earlier than the one before."""
    slots = plan({"big": 600, "small": 60, "mid": 120, "also-mid": 120}, now_s=T0, pace_per_s=10, drain_window_s=60)

    assert [s.server_id for s in slots] == ["small", "also-mid", "mid", "big"]
    assert [s.at_s - T0 for s in slots] == [0, 0, 0, 60]


def test_server_too_fast_for_the_pace_goes_alone() -> None:
    """A server whose own rate is above the pace starts once nothing else is in flight, flagged over pace."""
    slots = plan({"huge": 1200, "small": 60}, now_s=T0, pace_per_s=10, drain_window_s=60)

    assert slots == (Slot("small", T0, 60), Slot("huge", T0 + 60, 1200, over_pace=True))


def test_notices_in_flight_count_against_the_pace() -> None:
    """A notice sent 30 s ago at 8/s leaves room for 2/s now; the next server waits for its window's end."""
    sent = [Sent("old", T0 - 30, 480)]
    slots = plan({"a": 120, "b": 300}, sent=sent, now_s=T0, pace_per_s=10, drain_window_s=60)

    assert [(s.server_id, s.at_s - T0) for s in slots] == [("a", 0), ("b", 30)]
    assert peak_rate(slots, 60, sent) <= 10


def test_answers_call_by_call() -> None:
    """Each call writes only the notices then due and answers IN_PROGRESS, then SUCCEEDED once blue is empty."""
    clock = FakeClock()
    migration = Migration(CONFIG, clock=clock)
    blue = {"a": 300, "b": 300, "c": 300}

    first = migration.step(None, blue)
    assert first.status == "IN_PROGRESS"
    assert [s.server_id for s in first.notices] == ["a", "b"]
    assert first.callback_delay_s == 30  # the next notice is 60 s away; ECS is asked back after at most 30 s
    details = first.hook_response()["hookDetails"]

    clock.now_s = T0 + 30
    second = migration.step(details, {"a": 150, "b": 150, "c": 300})
    assert second.status == "IN_PROGRESS"
    assert second.notices == ()
    assert second.callback_delay_s == 30
    details = second.hook_response(details)["hookDetails"]

    clock.now_s = T0 + 60
    third = migration.step(details, {"a": 0, "b": 0, "c": 300})
    assert third.status == "IN_PROGRESS"
    assert [s.server_id for s in third.notices] == ["c"]
    details = third.hook_response(details)["hookDetails"]

    clock.now_s = T0 + 90
    fourth = migration.step(details, {"a": 0, "b": 0, "c": 150})
    assert (fourth.status, fourth.notices) == ("IN_PROGRESS", ())
    details = fourth.hook_response(details)["hookDetails"]

    clock.now_s = T0 + 120
    last = migration.step(details, {"a": 0, "b": 0, "c": 4})
    assert last.status == "SUCCEEDED"
    assert last.notices == ()
    assert last.note == "blue holds 4 connection(s), at or under 5: migration done"
    assert last.hook_response(details) == {"hookStatus": "SUCCEEDED", "hookDetails": details}


def test_callback_delay_reaches_the_next_notice() -> None:
    """When the next planned notice is under 30 s away, ECS is asked back exactly then (rounded up)."""
    state = MigrationState(T0 - 47.5, (Sent("a", T0 - 47.5, 480),))
    decision = decide(CONFIG, state, {"a": 100, "b": 300}, now_s=T0)

    assert decision.notices == ()
    assert decision.callback_delay_s == 13  # a's window ends at T0 + 12.5


def test_late_call_does_not_batch_notices_the_pace_keeps_apart() -> None:
    """Called long after a notice was due, the hook sends one and plans the next a drain window later."""
    config = MigrationConfig(pace_per_s=5, window_s=600, drain_window_s=60)
    blue = {"a": 300, "b": 300, "c": 300}
    first = decide(config, None, blue, now_s=T0)
    assert [s.server_id for s in first.notices] == ["a"]

    late = decide(config, first.state, blue, now_s=T0 + 200)

    assert [s.server_id for s in late.notices] == ["b"]
    assert [(s.server_id, s.at_s - T0) for s in late.plan] == [("b", 200), ("c", 260)]


def test_window_end_succeeds_with_what_is_left() -> None:
    """At the window's end the hook answers SUCCEEDED, writes no more notices and says how many connections remain."""
    config = MigrationConfig(pace_per_s=1, window_s=120, drain_window_s=60)
    start = decide(config, None, {"a": 60, "b": 60, "c": 60}, now_s=T0)
    assert [s.server_id for s in start.notices] == ["a"]

    middle = decide(config, start.state, {"a": 0, "b": 60, "c": 60}, now_s=T0 + 60)
    assert [s.server_id for s in middle.notices] == ["b"]

    end = decide(config, middle.state, {"a": 0, "b": 60, "c": 60}, now_s=T0 + 120)

    assert end.status == "SUCCEEDED"
    assert end.notices == ()
    assert end.blue_connections == 120
    assert end.note == (
        "the migration window of 120 s has ended with 120 connection(s) on 2 blue server(s), "
        "1 of them never told to drain: cleanup's stop sequence ends them"
    )


def test_registry_outage_waits_until_the_window_ends() -> None:
    """Without heartbeats the hook writes nothing and answers IN_PROGRESS, then SUCCEEDED once the window is over."""
    first = decide(CONFIG, None, None, now_s=T0)
    assert (first.status, first.notices, first.callback_delay_s) == ("IN_PROGRESS", (), 30)
    assert first.state == MigrationState(T0)

    near_end = decide(CONFIG, first.state, None, now_s=T0 + 590)
    assert (near_end.status, near_end.callback_delay_s) == ("IN_PROGRESS", 10)

    after = decide(CONFIG, first.state, None, now_s=T0 + 600)
    assert after.status == "SUCCEEDED"
    assert "blue's connections are unknown" in after.note


def test_nearly_empty_blue_succeeds_and_tells_the_rest() -> None:
    """At or under the threshold the hook succeeds at once and sends the servers not yet told their notice."""
    decision = decide(CONFIG, None, {"a": 3, "b": 2, "c": 0}, now_s=T0)

    assert decision.status == "SUCCEEDED"
    assert [s.server_id for s in decision.notices] == ["c", "b", "a"]
    assert {s.server_id for s in decision.state.sent} == {"a", "b", "c"}


def test_hook_details_round_trip() -> None:
    """The state survives JSON through hookDetails, other keys are kept, and a malformed state is refused."""
    state = MigrationState(T0 + 0.25, (Sent("a", T0 + 1.5, 300), Sent("b", T0 + 61.125, 42)))
    response = decide(CONFIG, state, {"a": 100, "b": 40, "c": 300}, now_s=T0 + 70).hook_response({"owner": "x"})

    carried = json.loads(json.dumps(response["hookDetails"]))
    assert carried["owner"] == "x"
    back = MigrationState.from_details(carried)
    assert back is not None
    assert back.started_at_s == T0 + 0.25
    assert back.sent[:2] == state.sent
    assert len(json.dumps(carried)) < 200

    assert MigrationState.from_details({"owner": "x"}) is None
    assert MigrationState.from_details(None) is None
    with pytest.raises(ValueError, match=f"malformed {DETAILS_KEY} in hookDetails"):
        MigrationState.from_details({DETAILS_KEY: {"v": 1, "startedAtMs": "soon", "sent": []}})


def test_invalid_settings_are_named() -> None:
    """Settings out of range fail with every problem named."""
    with pytest.raises(ValueError, match="invalid migration settings") as info:
        MigrationConfig(pace_per_s=0, window_s=600, drain_window_s=-1)
    assert str(info.value) == (
        "invalid migration settings: pace_per_s=0 must be > 0 reconnects per second; "
        "drain_window_s=-1 must be > 0 seconds"
    )
