"""The drain as it runs: tell each client to reconnect at its moment, then close what is left.

:mod:`stickyws.server.drain` plans the moments; :class:`DrainSchedule` follows the plan as time
passes (pure: every method takes the time, monotonic seconds), at most ``drain_pace_per_s``
instructions a second, and squeezes what is left into ``shutdown_timeout_s`` when SIGTERM comes;
:class:`Drainer` runs it for every stop cause: waits, sends each ``reconnect`` frame (with ``avoid``, the
server's revision, when it has one) and closes with 1012, and at the deadline closes every connection
still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from stickyws import keys, protocol
from stickyws.registry.errors import RegistryUnavailable
from stickyws.registry.interfaces import Registry
from stickyws.server import drain as drain_plan
from stickyws.server.core_types import Connection, Spawn
from stickyws.server.drain import DrainStep
from stickyws.server.metrics import Metrics
from stickyws.settings.model import ServerSettings

#: How often the drain looks whether every connection is gone before its deadline.
DRAINED_POLL_S = 0.02


@dataclass
class DrainRun:
    """One drain: what triggered it, when it started (monotonic seconds), and ``done`` once it ended."""

    source: str
    started_at: float
    done: asyncio.Event = field(default_factory=asyncio.Event)


class DrainSchedule:
    """The drain plan as time passes: the next step's delay, the deadline, the squeeze after SIGTERM.

    Built from the connections open when the drain starts at ``started_at``, spread over
    ``max(drain_window_s, n / pace_per_s)`` with no two instructions closer than ``1 / pace_per_s``
    (``pace_per_s`` 0: no pace); with ``sigterm`` the plan fits ``shutdown_timeout_s`` from the start
    (:func:`stickyws.server.drain.effective_window_s`).
    """

    def __init__(
        self,
        conn_ids: Iterable[str],
        started_at: float,
        *,
        drain_window_s: float,
        shutdown_timeout_s: float,
        rng: random.Random,
        sigterm: bool,
        pace_per_s: float = 0.0,
    ) -> None:
        self._drain_window_s = drain_window_s
        self._shutdown_timeout_s = shutdown_timeout_s
        self._pace_per_s = pace_per_s
        self._rng = rng
        #: True once the plan fits the SIGTERM deadline.
        self.sigterm = sigterm
        ids = list(conn_ids)
        plan = drain_plan.plan(ids, self._window(len(ids)), rng, min_gap_s=drain_plan.min_gap_s(pace_per_s))
        #: When the plan's times count from (monotonic seconds).
        self.start = started_at
        #: When every connection still open is closed (monotonic seconds).
        self.deadline = started_at + plan.deadline_s
        #: The steps not taken yet, in time order.
        self.steps: list[DrainStep] = list(plan.steps)

    def _window(self, n: int) -> float:
        return drain_plan.effective_window_s(
            self._drain_window_s, self._shutdown_timeout_s, sigterm=self.sigterm, n=n, pace_per_s=self._pace_per_s
        )

    def delay(self, now: float) -> float | None:
        """Seconds from ``now`` until the next step is due (zero or less: due), ``None`` when none is left."""
        if not self.steps:
            return None
        return self.start + self.steps[0].at_s - now

    def pop(self) -> DrainStep:
        """Take the next step."""
        return self.steps.pop(0)

    def squeeze(self, now: float) -> None:
        """SIGTERM came at ``now``: spread the steps left over the window the SIGTERM deadline leaves, from
        ``now``; the deadline only ever moves earlier."""
        self.sigterm = True
        ids = [s.conn_id for s in self.steps]
        gap = drain_plan.min_gap_s(self._pace_per_s)
        plan = drain_plan.plan(ids, self._window(len(ids)), self._rng, min_gap_s=gap)
        self.start = now
        self.deadline = min(self.deadline, now + plan.deadline_s)
        self.steps = list(plan.steps)


class Drainer:
    """Runs drains (see the module docstring); ``announce`` writes the heartbeat that says ``draining``;
    the server's ``revision`` setting ("" for none) goes into every ``reconnect`` frame as ``avoid``."""

    def __init__(
        self,
        *,
        server_id: str,
        registry: Registry,
        server: ServerSettings,
        metrics: Metrics,
        connections: Mapping[str, Connection],
        write: Callable[[Connection, str], None],
        announce: Callable[[], Awaitable[None]],
        spawn: Spawn,
        rng: random.Random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server_id = server_id
        self.registry = registry
        self.server = server
        self.metrics = metrics
        self.connections = connections
        self._write = write
        self._announce = announce
        self._spawn = spawn
        self.rng = rng
        self._clock = clock
        #: Set by SIGTERM: the rest of the plan is squeezed into ``shutdown_timeout_s``.
        self.sigterm = asyncio.Event()
        #: The drain begun, if any (there is at most one in a server's life).
        self.run: DrainRun | None = None
        #: Drain instructions sent, as ``(monotonic time, conn_id)`` (for tests and the audit log).
        self.reconnects_sent: list[tuple[float, str]] = []

    def begin(self, source: str) -> DrainRun:
        """Start the drain in the background (the caller makes sure it is the first)."""
        run = self.run = DrainRun(source, self._clock())
        self._spawn(self._run(run))
        return run

    async def tell_reconnect(self, conn: Connection, retry_after_ms: int) -> None:
        """Send ``reconnect`` (``retryAfterMs``, and ``avoid`` when the server has a revision), close with
        1012, then tell the user's other tabs or processes by the user's reconnect channel."""
        self.reconnects_sent.append((self._clock(), conn.conn_id))
        self._write(conn, protocol.reconnect(protocol.RECONNECT_DRAINING, retry_after_ms, avoid=self.server.revision))
        await conn.close(protocol.CLOSE_SERVICE_RESTART, "server draining")
        with contextlib.suppress(RegistryUnavailable):  # after the close: a slow registry must not delay it
            await self.registry.publish(
                keys.reconnect_channel(conn.user_id),
                protocol.dumps({"type": "reconnect", "userId": conn.user_id, "serverId": self.server_id,
                                "reason": "server_draining", "retryAfterMs": retry_after_ms}),
            )  # fmt: skip

    async def _run(self, run: DrainRun) -> None:
        try:
            await self._steps(run)
        finally:
            seconds = self._clock() - run.started_at
            self.metrics.drain_seconds(seconds)
            self.metrics.audit(
                "drain_end", server=self.server_id, source=run.source, seconds=round(seconds, 3),
                left=len(self.connections),
            )  # fmt: skip
            run.done.set()

    async def _steps(self, run: DrainRun) -> None:
        with contextlib.suppress(RegistryUnavailable):
            await self._announce()
        schedule = DrainSchedule(
            self.connections, run.started_at, drain_window_s=self.server.drain_window_s,
            shutdown_timeout_s=self.server.shutdown_timeout_s, rng=self.rng, sigterm=self.sigterm.is_set(),
            pace_per_s=self.server.drain_pace_per_s,
        )  # fmt: skip
        while (delay := schedule.delay(self._clock())) is not None:
            if delay > 0 and not schedule.sigterm:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.sigterm.wait()
                if self.sigterm.is_set():
                    schedule.squeeze(self._clock())
                continue
            if delay > 0:
                await asyncio.sleep(delay)
            step = schedule.pop()
            conn = self.connections.get(step.conn_id)
            if conn is not None and not conn.closing:
                self._spawn(self.tell_reconnect(conn, step.retry_after_ms))
        while self.connections and self._clock() < schedule.deadline:  # noqa: ASYNC110 - bounded by the deadline
            await asyncio.sleep(DRAINED_POLL_S)
        for conn in list(self.connections.values()):
            conn.closing = False
            self._spawn(conn.close(protocol.CLOSE_SERVICE_RESTART, "drain deadline"))
