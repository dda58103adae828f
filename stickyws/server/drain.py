"""The drain planner, pure: when each client is told to reconnect, and the hard deadline.

Telling every client at once makes them all reconnect at once (a thundering herd on the other
tasks and on the registry). The planner spreads the instructions over the drain window: the
window is cut into one slot per connection and each connection gets a random moment inside a
random slot, so the instructions are uniform over the window with no two in the same slot.
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


def effective_window_s(drain_window_s: float, shutdown_timeout_s: float, *, sigterm: bool) -> float:
    """The window to spread over: the drain window, or what the SIGTERM deadline leaves of it.

    After SIGTERM the whole drain must end within ``shutdown_timeout_s``, so the instructions are
    spread over that minus :data:`CLOSE_GRACE_S` (never below zero).
    """
    if not sigterm:
        return max(0.0, drain_window_s)
    return max(0.0, min(drain_window_s, shutdown_timeout_s - CLOSE_GRACE_S))


def plan(conn_ids: Sequence[str], window_s: float, rng: random.Random, *, deadline_s: float | None = None) -> DrainPlan:
    """Spread ``conn_ids`` over ``window_s`` (see module docstring).

    ``deadline_s`` defaults to ``window_s + CLOSE_GRACE_S``. ``retry_after_ms`` is a small random
    jitter in ``[0, MAX_RETRY_JITTER_MS]`` capped by the window.
    """
    ids = list(conn_ids)
    rng.shuffle(ids)
    n = len(ids)
    slot = window_s / n if n else 0.0
    jitter_cap = int(min(MAX_RETRY_JITTER_MS, window_s * 1000))
    steps = tuple(
        DrainStep(conn_id, (i + rng.random()) * slot, rng.randint(0, jitter_cap)) for i, conn_id in enumerate(ids)
    )
    return DrainPlan(steps, window_s + CLOSE_GRACE_S if deadline_s is None else deadline_s)
