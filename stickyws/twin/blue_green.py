"""ECS blue/green, linear and canary deployments in the twin, and what each one measured.

:func:`deploy` runs the stages in ECS's order on a running :class:`~stickyws.twin.cluster.TwinCluster`:

1. **scale up**: as many green servers as blue serves, each started and registered in the other
   backend (the alternate target group) once healthy; green gets no production traffic yet.
2. **production traffic shift**: the weights of the production rule follow
   :func:`stickyws.twin.traffic_shift.schedule`, each step held for its step bake. Weights choose
   the backend of NEW requests only: open WebSockets stay on blue.
3. **hook** (optional): a callable given the cluster and blue's server names, called once the
   shift is complete and before the bake (ECS's POST_PRODUCTION_TRAFFIC_SHIFT stage): the place to
   move blue's clients, for example by publishing the drain notice to blue's servers.
4. **bake**: blue is kept (rollback without redeploying) for the bake time.
5. **cleanup**: every blue server deregistered together (``state maint``; no drain notice: ECS
   sends none), the deregistration delay (ending early once blue holds no connection),
   ``shutdown sessions`` (the cut), SIGTERM to all blue servers together, SIGKILL after
   ``stop_timeout_s``. Green's backend is production from then on.

What the twin measures is HAProxy's view and the registry's: connections per server (``scur``),
requests per server (``stot``: WebSocket handshakes, reconnects included), and the reconnect
instructions blue's servers announce (``ws:reconnect:{userId}``). Lost or doubled messages are
the clients' view (their outbox and acknowledgements) and are not in the report.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stickyws.localproc import kill_pid
from stickyws.twin import traffic_shift
from stickyws.twin.haproxy_config import ALTERNATE_BACKEND, ALTERNATE_WEIGHT_KEY, BACKEND
from stickyws.twin.operations import ANNOUNCEMENT_GRACE_S, ReconnectAnnouncements, deregistration_delay_s

if TYPE_CHECKING:
    from stickyws.twin.cluster import TwinCluster

#: Called after the production shift, before the bake, with the cluster and blue's server names.
Hook = Callable[["TwinCluster", tuple[str, ...]], None]
#: Seconds between two samples of HAProxy's request counters, and the window of the peak rate.
SAMPLE_INTERVAL_S = 0.05
PEAK_WINDOW_S = 0.25
#: Seconds after a weight change before a step's counting begins: a request HAProxy routed just before
#: the change is counted when its server takes it, so the first moments of a step are left out.
SETTLE_S = 0.1


def other_backend(backend: str) -> str:
    """The backend that is not ``backend`` (green is always the one production is not)."""
    return ALTERNATE_BACKEND if backend == BACKEND else BACKEND


@dataclass(frozen=True)
class Stage:
    """One stage of a deployment: its name, when it began (seconds after the deploy began) and how long it took."""

    name: str
    started_s: float
    duration_s: float


@dataclass(frozen=True)
class StepCount:
    """New requests (handshakes) each backend was given while one weight step held.

    Counting starts :data:`SETTLE_S` after the weight change; the last step (100 %) counts until
    cleanup begins (through the hook and the bake).
    """

    green_percent: float
    blue_handshakes: int
    green_handshakes: int

    @property
    def green_share(self) -> float | None:
        """Share of the step's handshakes that went to green; ``None`` when there were none."""
        total = self.blue_handshakes + self.green_handshakes
        return self.green_handshakes / total if total else None


@dataclass(frozen=True)
class DeployReport:
    """What one deployment did (the twin's view; see the module doc for what it cannot see).

    * ``blue_connections_at_shift``: connections blue held when the shift was complete;
    * ``blue_connections_at_cleanup``: still on blue when cleanup deregistered it;
    * ``cut``: still open when the deregistration delay ran out (``shutdown sessions``);
    * ``moved``: distinct users blue's servers told to reconnect (``ws:reconnect:{userId}``)
      from the scale-up to their exit; ``moved_more_than_once``: users told more than once;
    * ``closed_before_cut``: blue connections that ended between the shift and the cut, by a move
      or by their clients;
    * ``blue_handshakes_after_shift``: requests HAProxy sent to blue once its weight was 0 (the
      ALB sends none);
    * ``peak_handshakes_per_s``: the highest rate of new requests through HAProxy (both backends,
      over :data:`PEAK_WINDOW_S`) during the deployment.
    """

    strategy: str
    blue: tuple[str, ...]
    green: tuple[str, ...]
    stages: tuple[Stage, ...]
    steps: tuple[StepCount, ...]
    blue_connections_at_shift: int
    blue_connections_at_cleanup: int
    cut: int
    moved: int
    moved_more_than_once: int
    blue_handshakes_after_shift: int
    peak_handshakes_per_s: float
    exit_codes: tuple[int | None, ...]
    hooked: bool

    @property
    def closed_before_cut(self) -> int:
        """Blue connections that ended between the shift and the cut (see the class doc)."""
        return max(0, self.blue_connections_at_shift - self.cut)

    def render(self) -> str:
        """Several lines: the summary, one per step, one per stage, and what the twin cannot see."""
        lines = [
            f"deploy {self.strategy}: blue {'/'.join(self.blue)} -> green {'/'.join(self.green)}"
            f"{' (with hook)' if self.hooked else ''}: {self.blue_connections_at_shift} connections on blue "
            f"after the shift, {self.moved} moved ({self.moved_more_than_once} more than once), {self.cut} cut, "
            f"{self.closed_before_cut} closed before the cut; peak {self.peak_handshakes_per_s:.0f} handshakes/s; "
            f"{self.blue_handshakes_after_shift} handshakes to blue after its weight was 0; "
            f"blue exit codes {', '.join(str(c) for c in self.exit_codes)}",
        ]
        for step in self.steps:
            share = "-" if step.green_share is None else f"{100 * step.green_share:.0f} %"
            lines.append(
                f"  step {step.green_percent:g} % green: {step.green_handshakes} handshakes to green, "
                f"{step.blue_handshakes} to blue ({share} green)"
            )
        lines += [f"  {s.name}: at {s.started_s:.1f} s, took {s.duration_s:.1f} s" for s in self.stages]
        lines.append("  lost or doubled messages: the clients' view, not measured by the twin")
        return "\n".join(lines)


def peak_rate_per_s(samples: Sequence[tuple[float, int]], window_s: float = PEAK_WINDOW_S) -> float:
    """The highest rate between two samples ``(time, running count)`` at least ``window_s`` apart."""
    peak = 0.0
    j = 0
    for i in range(len(samples)):
        while j < len(samples) and samples[j][0] - samples[i][0] < window_s:
            j += 1
        if j == len(samples):
            break
        t0, c0 = samples[i]
        t1, c1 = samples[j]
        peak = max(peak, (c1 - c0) / (t1 - t0))
    return peak


class _Counters:
    """Samples HAProxy's request counters of both backends in a thread, for the peak rate."""

    def __init__(self, cluster: TwinCluster) -> None:
        self.cluster = cluster
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def totals(self) -> dict[str, int]:
        """Requests per backend since HAProxy started."""
        return {b: sum(self.cluster.api.total_sessions(b).values()) for b in (BACKEND, ALTERNATE_BACKEND)}

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a sample lost to a busy socket is only a gap
                self.samples.append((time.monotonic(), sum(self.totals().values())))
            self._stop.wait(SAMPLE_INTERVAL_S)

    def __enter__(self) -> _Counters:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


def deploy(
    cluster: TwinCluster,
    strategy: str,
    *,
    hook: Hook | None = None,
    bake_s: float | None = None,
    step_bake_s: float | None = None,
) -> DeployReport:
    """Run a ``strategy`` deployment on ``cluster`` (see the module doc); returns what it measured.

    ``bake_s`` and ``step_bake_s`` default to ``bake_time_min`` and ``step_bake_time_min`` scaled
    by the cluster's ``time_scale`` (:func:`~stickyws.twin.traffic_shift.scaled_minutes_s`).
    """
    settings = cluster.settings
    if bake_s is None:
        bake_s = traffic_shift.scaled_minutes_s(settings["bake_time_min"], cluster.time_scale)
    if step_bake_s is None:
        step_bake_s = traffic_shift.scaled_minutes_s(settings["step_bake_time_min"], cluster.time_scale)
    step_percent = float(settings["traffic_step_percent"])
    steps = traffic_shift.schedule(strategy, step_percent=step_percent, step_bake_s=step_bake_s)
    blue_backend = cluster.production
    green_backend = other_backend(blue_backend)
    blue = tuple(cluster.serving())
    if not blue:
        raise ValueError("no server is serving: start the twin (or add a server) before a deployment")
    say = cluster.say
    started = time.monotonic()
    stages: list[Stage] = []

    def stage(name: str, began: float) -> None:
        stages.append(Stage(name, began - started, time.monotonic() - began))
        say(f"deploy {strategy}: {name} done in {time.monotonic() - began:.2f} s")

    def set_green(weight: int) -> None:
        value = traffic_shift.alternate_weight(weight, green_is_alternate=green_backend == ALTERNATE_BACKEND)
        cluster.api.set_map(cluster.weights_map, ALTERNATE_WEIGHT_KEY, str(value))

    announcements = ReconnectAnnouncements(cluster.redis.url, frozenset(blue))
    try:
        with _Counters(cluster) as counters:
            began = time.monotonic()
            green = tuple(cluster.add(backend=green_backend).name for _ in blue)
            stage("scale up", began)

            counts: list[StepCount] = []
            began = time.monotonic()
            for step in steps:
                set_green(step.green_weight)
                say(f"deploy {strategy}: production shifted to {step.green_percent:g} % green")
                _hold(announcements, SETTLE_S)
                before = counters.totals()
                if step is steps[-1]:
                    final_before = before
                    break
                _hold(announcements, max(0.0, step.hold_s - SETTLE_S))
                after = counters.totals()
                counts.append(
                    StepCount(
                        step.green_percent,
                        after[blue_backend] - before[blue_backend],
                        after[green_backend] - before[green_backend],
                    )
                )
            stage("production traffic shift", began)
            at_shift = _connections(cluster, blue_backend, blue)

            if hook is not None:
                began = time.monotonic()
                hook(cluster, blue)
                stage("hook", began)
            began = time.monotonic()
            _hold(announcements, bake_s)
            stage("bake", began)

            began = time.monotonic()
            after = counters.totals()
            counts.append(
                StepCount(
                    steps[-1].green_percent,
                    after[blue_backend] - final_before[blue_backend],
                    after[green_backend] - final_before[green_backend],
                )
            )
            cut, at_cleanup, exit_codes = _cleanup(cluster, blue_backend, blue, announcements)
            cluster.production = green_backend
            stage("cleanup", began)
            samples = list(counters.samples)
    finally:
        announcements.close()
    users = announcements.channels
    return DeployReport(
        strategy=strategy,
        blue=blue,
        green=green,
        stages=tuple(stages),
        steps=tuple(counts),
        blue_connections_at_shift=at_shift,
        blue_connections_at_cleanup=at_cleanup,
        cut=cut,
        moved=len(users),
        moved_more_than_once=sum(1 for n in users.values() if n > 1),
        blue_handshakes_after_shift=counts[-1].blue_handshakes,
        peak_handshakes_per_s=peak_rate_per_s(samples),
        exit_codes=exit_codes,
        hooked=hook is not None,
    )


def _hold(announcements: ReconnectAnnouncements, seconds: float) -> None:
    """Wait ``seconds`` while counting reconnect instructions."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        announcements.read(min(0.05, left))


def _connections(cluster: TwinCluster, backend: str, names: Sequence[str]) -> int:
    sessions = cluster.api.current_sessions(backend)
    return sum(sessions.get(n, 0) for n in names)


def _cleanup(
    cluster: TwinCluster, backend: str, blue: Sequence[str], announcements: ReconnectAnnouncements
) -> tuple[int, int, tuple[int | None, ...]]:
    """Stop every blue server together in the ECS order; returns (cut, connections at start, exit codes)."""
    procs = [cluster.procs[n] for n in blue]
    for proc in procs:
        proc.phase = "deregistering"
        cluster.api.set_state(backend, proc.name, "maint")
    at_start = _connections(cluster, backend, blue)
    delay_s = deregistration_delay_s(cluster.settings)
    names = "/".join(blue)
    cluster.say(f"cleanup: blue {names} deregistered with {at_start} connection(s); waiting up to {delay_s:g} s")
    deadline = time.monotonic() + delay_s
    remaining = at_start
    while remaining > 0 and time.monotonic() < deadline:
        announcements.read(0.05)
        remaining = _connections(cluster, backend, blue)
    for proc in procs:
        cluster.api.shutdown_sessions(backend, proc.name)
    cluster.say(f"cleanup: deregistration delay over, {remaining} connection(s) cut")
    for proc in procs:  # SIGTERM to every blue server at once, as ECS stops the blue task set
        with contextlib.suppress(ProcessLookupError):
            proc.proc.send_signal(signal.SIGTERM)
    stop_deadline = time.monotonic() + float(cluster.settings["stop_timeout_s"])
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.proc.wait(timeout=max(0.0, stop_deadline - time.monotonic()))
        if proc.alive:
            kill_pid(proc.proc)
        proc.exit_code = proc.proc.returncode
        proc.phase = "stopped"
    cluster.say(f"cleanup: blue SIGTERM, exit codes {', '.join(str(p.exit_code) for p in procs)}")
    announcements.read_until_quiet(ANNOUNCEMENT_GRACE_S)
    return remaining, at_start, tuple(p.exit_code for p in procs)
