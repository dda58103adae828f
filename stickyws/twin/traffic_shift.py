"""The production traffic shift of ECS blue/green, linear and canary deployments, as a pure schedule.

ECS rewrites the production listener rule to a weighted forward between the blue (production) and
the green (alternate) target group and moves the weights in steps; the twin does the same with
HAProxy (:mod:`stickyws.twin.haproxy_config`: ``rand`` against a weight held in a map). Weights
choose the target group of NEW requests only: an upgraded WebSocket is one request and stays on
blue through every step and the bake.

* ``blue_green``: one step, 0 -> 100 % green.
* ``linear``: ``traffic_step_percent`` more per step (10, 20, ... 100), ``step_bake_s`` held after
  every step but the last.
* ``canary``: ``traffic_step_percent`` first, held ``step_bake_s``, then 100 %.

After the last step ECS holds the bake (``bake_time_min``), then stops every blue task together.
The twin scales the bakes with its ``time_scale`` (:func:`scaled_minutes_s`) so that minutes become
seconds, as it scales health-check intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Strategies that shift traffic between two target groups (``rolling`` replaces tasks in place).
SHIFT_STRATEGIES: Final = ("blue_green", "linear", "canary")
#: Weights are held in basis points (1/100 of a percent): the smallest canary AWS allows is 0.1 %.
FULL_WEIGHT: Final = 10_000


@dataclass(frozen=True)
class ShiftStep:
    """One production traffic shift: ``green_percent`` of new requests go to green, held ``hold_s`` after."""

    green_percent: float
    hold_s: float

    @property
    def green_weight(self) -> int:
        """The green share in basis points (0..:data:`FULL_WEIGHT`)."""
        return round(self.green_percent * FULL_WEIGHT / 100)


def schedule(strategy: str, *, step_percent: float, step_bake_s: float) -> list[ShiftStep]:
    """The steps of ``strategy``; the last one is always 100 % with no hold (the bake follows it).

    Raises ``ValueError`` for ``rolling`` or an unknown strategy, and for a step outside (0, 100].
    """
    if strategy not in SHIFT_STRATEGIES:
        raise ValueError(
            f"deployment strategy {strategy!r} shifts no traffic: use one of {', '.join(SHIFT_STRATEGIES)}"
            " (rolling replaces the servers one at a time)"
        )
    if not 0 < step_percent <= 100:
        raise ValueError(f"traffic_step_percent={step_percent:g} must be in (0, 100]")
    if step_bake_s < 0:
        raise ValueError(f"step bake {step_bake_s:g} s must not be negative")
    if strategy == "blue_green" or step_percent >= 100:
        return [ShiftStep(100.0, 0.0)]
    if strategy == "canary":
        return [ShiftStep(float(step_percent), step_bake_s), ShiftStep(100.0, 0.0)]
    steps: list[ShiftStep] = []
    i = 1
    while (share := round(i * step_percent, 6)) < 100:
        steps.append(ShiftStep(share, step_bake_s))
        i += 1
    steps.append(ShiftStep(100.0, 0.0))
    return steps


def scaled_minutes_s(minutes: float, time_scale: float) -> float:
    """``minutes`` as the twin's seconds: ``minutes * 60 * time_scale`` (0.05: 15 min -> 45 s)."""
    if minutes < 0 or time_scale <= 0:
        raise ValueError(f"minutes={minutes:g} and time_scale={time_scale:g} must be >= 0 and > 0")
    return minutes * 60.0 * time_scale


def alternate_weight(green_weight: int, *, green_is_alternate: bool) -> int:
    """The weight (basis points) HAProxy's map holds for the alternate backend when green has ``green_weight``."""
    if not 0 <= green_weight <= FULL_WEIGHT:
        raise ValueError(f"weight {green_weight} must be in 0..{FULL_WEIGHT}")
    return green_weight if green_is_alternate else FULL_WEIGHT - green_weight
