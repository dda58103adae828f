"""The production traffic shift schedule of blue/green, linear and canary deployments (pure)."""

from __future__ import annotations

import pytest

from stickyws.twin.blue_green import StepCount, peak_rate_per_s
from stickyws.twin.traffic_shift import (
    FULL_WEIGHT,
    ShiftStep,
    alternate_weight,
    scaled_minutes_s,
    schedule,
)


def test_blue_green_shifts_everything_at_once() -> None:
    """blue_green is one step to 100 % with no hold, whatever the step settings."""
    assert schedule("blue_green", step_percent=10, step_bake_s=5) == [ShiftStep(100.0, 0.0)]


def test_linear_moves_one_step_share_per_step_and_holds_between() -> None:
    """linear at 25 % goes 25, 50, 75, 100, holding the step bake after every step but the last."""
    assert schedule("linear", step_percent=25, step_bake_s=2) == [
        ShiftStep(25.0, 2.0),
        ShiftStep(50.0, 2.0),
        ShiftStep(75.0, 2.0),
        ShiftStep(100.0, 0.0),
    ]


def test_linear_with_a_step_that_does_not_divide_100_ends_at_100() -> None:
    """linear at 30 % goes 30, 60, 90, then 100; at 10 % it has ten steps with no float drift."""
    assert [s.green_percent for s in schedule("linear", step_percent=30, step_bake_s=0)] == [30, 60, 90, 100]
    assert [s.green_percent for s in schedule("linear", step_percent=10, step_bake_s=0)] == [
        10,
        20,
        30,
        40,
        50,
        60,
        70,
        80,
        90,
        100,
    ]


def test_canary_is_the_first_step_then_the_rest() -> None:
    """canary at 0.1 % holds 0.1 % for the step bake, then shifts to 100 %."""
    steps = schedule("canary", step_percent=0.1, step_bake_s=3)
    assert steps == [ShiftStep(0.1, 3.0), ShiftStep(100.0, 0.0)]
    assert [s.green_weight for s in steps] == [10, FULL_WEIGHT]


def test_a_full_step_is_one_shift() -> None:
    """A step of 100 % makes linear and canary a single shift."""
    assert schedule("linear", step_percent=100, step_bake_s=4) == [ShiftStep(100.0, 0.0)]
    assert schedule("canary", step_percent=100, step_bake_s=4) == [ShiftStep(100.0, 0.0)]


@pytest.mark.parametrize(
    ("strategy", "step", "bake", "message"),
    [
        ("rolling", 10, 0, "shifts no traffic"),
        ("purple", 10, 0, "shifts no traffic"),
        ("linear", 0, 0, "must be in (0, 100]"),
        ("linear", 101, 0, "must be in (0, 100]"),
        ("canary", 10, -1, "must not be negative"),
    ],
)
def test_impossible_schedules_are_refused(strategy: str, step: float, bake: float, message: str) -> None:
    """rolling, unknown strategies, steps outside (0, 100] and negative bakes raise ValueError saying why."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("]", r"\]")):
        schedule(strategy, step_percent=step, step_bake_s=bake)


def test_minutes_are_scaled_like_the_rest_of_the_twin() -> None:
    """15 minutes at time scale 0.05 are 45 s; at 1.0 they are 900 s."""
    assert scaled_minutes_s(15, 0.05) == pytest.approx(45.0)
    assert scaled_minutes_s(15, 1.0) == 900.0
    with pytest.raises(ValueError, match="time_scale=0"):
        scaled_minutes_s(1, 0)


def test_the_alternate_weight_depends_on_which_backend_is_green() -> None:
    """Green on the alternate backend takes green's weight there; green on the first backend leaves the rest."""
    assert alternate_weight(2500, green_is_alternate=True) == 2500
    assert alternate_weight(2500, green_is_alternate=False) == 7500
    assert alternate_weight(FULL_WEIGHT, green_is_alternate=False) == 0
    with pytest.raises(ValueError, match=r"must be in 0\.\.10000"):
        alternate_weight(FULL_WEIGHT + 1, green_is_alternate=True)


def test_step_share_and_peak_rate() -> None:
    """A step's green share is green over all its handshakes (None without any); the peak rate is the
    steepest rise of the running count over the window."""
    assert StepCount(25.0, 30, 10).green_share == 0.25
    assert StepCount(25.0, 0, 0).green_share is None
    samples = [(0.0, 0), (0.25, 5), (0.5, 30), (0.75, 35), (1.0, 35)]
    assert peak_rate_per_s(samples, window_s=0.25) == pytest.approx(100.0)
    assert peak_rate_per_s(samples[:1], window_s=0.25) == 0.0


class _FakeReport:
    def render(self) -> str:
        return "deploy linear: report"


class _FakeCluster:
    def __init__(self) -> None:
        self.strategies: list[str] = []

    def deploy(self, strategy: str) -> _FakeReport:
        self.strategies.append(strategy)
        return _FakeReport()


def test_the_deploy_command_takes_a_shift_strategy_and_prints_the_report() -> None:
    """``deploy linear`` runs a linear deployment and prints its report; ``deploy purple`` runs nothing."""
    from stickyws.twin.cli import execute

    cluster = _FakeCluster()
    lines: list[str] = []
    assert execute(cluster, ["deploy", "linear"], lines.append) == "ok"
    assert execute(cluster, ["deploy", "purple"], lines.append) == "ok"
    assert cluster.strategies == ["linear"]
    assert lines[0] == "deploy linear: report"
    assert lines[1].startswith("unknown command 'deploy purple'")
