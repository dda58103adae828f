"""The drain planner, pure: when each client is told to reconnect, and the hard deadline.

Telling every client at once makes them all reconnect at once (a thundering herd on the other
tasks and on the registry). The planner spreads the instructions over the drain window: the
window is cut into one slot per connection and each connection gets a random moment inside a
random slot, so the instructions are uniform over the window with no two in the same slot.

The pace (``drain_pace_per_s``, reconnect instructions per second) bounds the rate: the window is
at least ``n / pace`` (:func:`effective_window_s`), and no two instructions are closer than
``1 / pace`` (:func:`plan`'s ``min_gap_s``), so no interval of ``k / pace`` seconds holds more than
``k`` instructions. The same plan serves every stop cause (drain notice, target health, task
metadata, SIGTERM, preStop); only SIGTERM's hard deadline may squeeze it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

#: Time kept after the last instruction for clients to close and for the server to clean up.
CLOSE_GRACE_S = 1.0
#: Largest ``retryAfterMs`` jitter told to a client (on top of the spread of the instructions).
MAX_RETRY_JITTER_MS = 500


@dataclass(frozen=True)
class DrainStep:
    """Tell connection ``conn_id`` to reconnect ``at_s`` seconds after the drain started."""

    conn_id: str
    at_s: float
    retry_after_ms: int


@dataclass(frozen=True)
class DrainPlan:
    """Every step, sorted by time, and the hard deadline (seconds after the drain started)."""

    steps: tuple[DrainStep, ...]
    deadline_s: float


def min_gap_s(pace_per_s: float) -> float:
    """The least time between two instructions at ``pace_per_s`` (0: no pace, no gap)."""
    return 1.0 / pace_per_s if pace_per_s > 0 else 0.0


def effective_window_s(
    drain_window_s: float, shutdown_timeout_s: float, *, sigterm: bool, n: int = 0, pace_per_s: float = 0.0
) -> float:
    """The window to spread ``n`` connections over: ``max(drain_window_s, n / pace_per_s)``.

    After SIGTERM the whole drain must end within ``shutdown_timeout_s``, so the window is cut to
    that minus :data:`CLOSE_GRACE_S` (never below zero): the deadline beats the pace.
    """
    paced = max(0.0, drain_window_s, n * min_gap_s(pace_per_s))
    if not sigterm:
        return paced
    return max(0.0, min(paced, shutdown_timeout_s - CLOSE_GRACE_S))


def plan(
    conn_ids: Sequence[str],
    window_s: float,
    rng: random.Random,
    *,
    deadline_s: float | None = None,
    min_gap_s: float = 0.0,
) -> DrainPlan:
    """Spread ``conn_ids`` over ``window_s`` (see module docstring), no two closer than ``min_gap_s``.

    Slot ``i`` is ``[i * slot, (i + 1) * slot)``; its moment is ``i * slot + phase * gap + r_i * (slot - gap)``
    with ``gap = min(min_gap_s, slot)``, one random ``phase`` for the plan and a random ``r_i`` per slot:
    consecutive moments are at least ``gap`` apart, and with ``min_gap_s=0`` every moment is uniform in its
    slot. ``deadline_s`` defaults to ``window_s + CLOSE_GRACE_S``. ``retry_after_ms`` is a small random
    jitter in ``[0, MAX_RETRY_JITTER_MS]`` capped by the window.
    """
    ids = list(conn_ids)
    rng.shuffle(ids)
    n = len(ids)
    slot = window_s / n if n else 0.0
    gap = min(max(0.0, min_gap_s), slot)
    phase = rng.random() * gap
    jitter_cap = int(min(MAX_RETRY_JITTER_MS, window_s * 1000))
    steps = tuple(
        DrainStep(conn_id, i * slot + phase + rng.random() * (slot - gap), rng.randint(0, jitter_cap))
        for i, conn_id in enumerate(ids)
    )
    return DrainPlan(steps, window_s + CLOSE_GRACE_S if deadline_s is None else deadline_s)
