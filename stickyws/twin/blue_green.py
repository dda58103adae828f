"""ECS blue/green, linear and canary deployments in the twin, and what each one measured.

:func:`deploy` runs the stages in ECS's order on a running :class:`~stickyws.twin.cluster.TwinCluster`:

1. **scale up**: as many green servers as blue serves, each started and registered in the other
   backend (the alternate target group) once healthy; green gets no production traffic yet.
2. **production traffic shift**: the weights of the production rule follow
   :func:`stickyws.twin.traffic_shift.schedule`, each step held for its step bake. Weights choose
   the backend of NEW requests only: open WebSockets stay on blue.
3. **hook** (ECS's POST_PRODUCTION_TRAFFIC_SHIFT stage): a callable given the cluster and blue's
   server names, called once the shift is complete and before the bake. By default
   (:data:`PACED`) the migration hook (:func:`stickyws.twin.migration.paced_hook`: the Lambda's
   decisions, called again after each ``callBackDelay`` until it succeeds) tells blue's servers to
   drain at ``migration_pace_per_s``; ``None`` runs no hook (what ECS does alone, the baseline).
4. **bake**: blue is kept (rollback without redeploying) for the bake time.
5. **cleanup**: every blue server deregistered together (``state maint``; no drain notice: ECS
   sends none), the deregistration delay (ending early once blue holds no connection),
   ``shutdown sessions`` (the cut), SIGTERM to all blue servers together, SIGKILL after
   ``stop_timeout_s``. Green's backend is production from then on.

**Rollback during the bake** (``rollback=True``): after ``rollback_after_s`` of the bake, blue's
servers that no longer serve (the migration drained them: a drained server refuses every new
handshake until it stops) are replaced by fresh ones in blue's backend, the weights go back to
blue at once, the same hook moves green's clients back (roles swapped: green's servers are the
ones told to drain), and green is stopped with the cleanup above, then the drained blue servers.
Blue's backend stays production.

What the twin measures is HAProxy's view and the registry's: connections per server (``scur``),
requests per server (``stot``: WebSocket handshakes, reconnects included), and the reconnect
instructions the replaced servers announce (``ws:reconnect:{userId}``). Lost or doubled messages
are the clients' view: with ``probes=N`` the twin runs N probe clients through the deployment
(:mod:`stickyws.twin.probes`) and reports them; without, the report says they were not measured.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from stickyws.localproc import http_status, kill_pid
from stickyws.twin import traffic_shift
from stickyws.twin.haproxy_config import ALTERNATE_BACKEND, ALTERNATE_WEIGHT_KEY, BACKEND
from stickyws.twin.operations import ANNOUNCEMENT_GRACE_S, ReconnectAnnouncements, deregistration_delay_s
from stickyws.twin.probes import ProbeClients, ProbeCount

if TYPE_CHECKING:
    from stickyws.twin.cluster import TwinCluster

#: Called after the production shift, before the bake, with the cluster and the names of the servers to empty.
Hook = Callable[["TwinCluster", tuple[str, ...]], None]
#: Seconds between two samples of HAProxy's request counters.
SAMPLE_INTERVAL_S = 0.05
#: The window of the peak handshake rate: handshakes per second are counted over whole seconds.
PEAK_WINDOW_S = 1.0
#: Seconds after a weight change before a step's counting begins: a request HAProxy routed just before
#: the change is counted when its server takes it, so the first moments of a step are left out.
SETTLE_S = 0.1
#: What the report says of a count only clients can make, when no probe clients ran.
NOT_MEASURED: Final = "not measured"


class Paced:
    """The type of :data:`PACED`: the default hook, the migration hook on the twin's settings."""

    def __repr__(self) -> str:
        return "PACED"


#: The default ``hook`` of :func:`deploy`: :func:`stickyws.twin.migration.paced_hook` with the twin's settings.
PACED: Final = Paced()


def resolve_hook(hook: Hook | Paced | None) -> Hook | None:
    """``hook`` itself, or for :data:`PACED` a new migration hook on the twin's settings."""
    if isinstance(hook, Paced):
        from stickyws.twin.migration import paced_hook

        return paced_hook()
    return hook


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
class RollbackReport:
    """What a rollback during the bake did (see the module doc).

    * ``after_s``: seconds into the bake at which it began;
    * ``replaced``: blue's servers that no longer served (drained by the migration), each with the
      fresh server that replaced it before the weights went back;
    * ``green_connections``: connections green held when the weights went back to blue;
    * ``moved_back``: distinct users green's servers told to reconnect; ``moved_back_more_than_once``:
      users they told more than once;
    * ``cut``: green's connections still open at the end of its deregistration delay;
    * ``exit_codes``: green's servers', then the replaced blue servers'.
    """

    after_s: float
    replaced: tuple[tuple[str, str], ...]
    green_connections: int
    moved_back: int
    moved_back_more_than_once: int
    cut: int
    exit_codes: tuple[int | None, ...]

    def render(self) -> str:
        """One line."""
        replaced = ", ".join(f"{old} by {new}" for old, new in self.replaced)
        return (
            f"  rollback at {self.after_s:.1f} s into the bake: "
            + (f"drained blue servers replaced ({replaced}), " if replaced else "")
            + f"{self.green_connections} connections on green, {self.moved_back} moved back "
            f"({self.moved_back_more_than_once} more than once), {self.cut} cut; "
            f"exit codes {_codes(self.exit_codes)}"
        )


@dataclass(frozen=True)
class DeployReport:
    """What one deployment did (the twin's view, and the probe clients' when there were any).

    * ``blue_connections_at_shift``: connections blue held when the shift was complete;
    * ``blue_connections_at_cleanup``: still on blue when cleanup deregistered it (0 after a rollback:
      blue is kept);
    * ``cut``: still open when the deregistration delay ran out (``shutdown sessions``);
    * ``moved``: distinct users blue's servers told to reconnect (``ws:reconnect:{userId}``)
      from the scale-up to their exit; ``moved_more_than_once``: users told more than once;
    * ``closed_before_cut``: blue connections that ended between the shift and the cut, by a move
      or by their clients;
    * ``blue_handshakes_after_shift``: requests HAProxy sent to blue once its weight was 0 (the
      ALB sends none);
    * ``peak_handshakes_per_s``: the highest rate of new requests through HAProxy (both backends,
      over :data:`PEAK_WINDOW_S`) during the deployment;
    * ``lost`` and ``doubled``: messages, pushes and publications the probe clients never received,
      or received more than once (``probes``); ``None`` without probe clients (not measured);
    * ``hook_calls``: how often the migration hook was called (0 without it, or with another hook);
    * ``exit_codes``: how blue's servers ended (none after a rollback: blue is kept);
    * ``rollback``: what a rollback during the bake did, if there was one.
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
    probes: ProbeCount | None = None
    hook_calls: int = 0
    rollback: RollbackReport | None = None

    @property
    def closed_before_cut(self) -> int:
        """Blue connections that ended between the shift and the cut (see the class doc)."""
        return max(0, self.blue_connections_at_shift - self.cut)

    @property
    def lost(self) -> int | None:
        """What the probe clients never received (``None``: no probe clients, not measured)."""
        return None if self.probes is None else self.probes.lost

    @property
    def doubled(self) -> int | None:
        """What the probe clients received more than once (``None``: not measured)."""
        return None if self.probes is None else self.probes.doubled

    def render(self) -> str:
        """Several lines: the summary, one per step, one per stage, the rollback, and the clients' view."""
        calls = f"{self.hook_calls} call{'s' if self.hook_calls != 1 else ''}"
        hook = f" (migration hook, {calls})" if self.hook_calls else " (hook)" if self.hooked else ""
        lines = [
            f"deploy {self.strategy}: blue {'/'.join(self.blue)} -> green {'/'.join(self.green)}{hook}"
            f"{', rolled back' if self.rollback else ''}: {self.blue_connections_at_shift} connections on blue "
            f"after the shift, {self.moved} moved ({self.moved_more_than_once} more than once), {self.cut} cut, "
            f"{self.closed_before_cut} closed before the cut; lost {_measured(self.lost)}, doubled "
            f"{_measured(self.doubled)}; peak {self.peak_handshakes_per_s:.0f} handshakes/s; "
            f"{self.blue_handshakes_after_shift} handshakes to blue after its weight was 0; "
            + ("blue kept (rolled back)" if self.rollback else f"blue exit codes {_codes(self.exit_codes)}"),
        ]
        for step in self.steps:
            share = "-" if step.green_share is None else f"{100 * step.green_share:.0f} %"
            lines.append(
                f"  step {step.green_percent:g} % green: {step.green_handshakes} handshakes to green, "
                f"{step.blue_handshakes} to blue ({share} green)"
            )
        lines += [f"  {s.name}: at {s.started_s:.1f} s, took {s.duration_s:.1f} s" for s in self.stages]
        if self.rollback is not None:
            lines.append(self.rollback.render())
        if self.probes is None:
            lines.append(f"  lost and doubled messages: {NOT_MEASURED} (the clients' view: run probe clients)")
        else:
            lines.append(f"  {self.probes.render()}")
        return "\n".join(lines)


def _codes(codes: Sequence[int | None]) -> str:
    return ", ".join(str(c) for c in codes) or "none"


def _measured(value: int | None) -> str:
    return NOT_MEASURED if value is None else str(value)


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
    hook: Hook | Paced | None = PACED,
    bake_s: float | None = None,
    step_bake_s: float | None = None,
    rollback: bool = False,
    rollback_after_s: float | None = None,
    probes: int = 0,
) -> DeployReport:
    """Run a ``strategy`` deployment on ``cluster`` (see the module doc); returns what it measured.

    ``hook``: :data:`PACED` (the migration hook), your own, or ``None`` (no hook: cleanup cuts
    blue's clients). ``bake_s`` and ``step_bake_s`` default to ``bake_time_min`` and
    ``step_bake_time_min`` scaled by the cluster's ``time_scale``
    (:func:`~stickyws.twin.traffic_shift.scaled_minutes_s`). ``rollback``: roll back after
    ``rollback_after_s`` of the bake (default: half of it). ``probes``: probe clients to run
    through the deployment, for the lost and doubled counts (0: not measured).
    """
    settings = cluster.settings
    if bake_s is None:
        bake_s = traffic_shift.scaled_minutes_s(settings["bake_time_min"], cluster.time_scale)
    if step_bake_s is None:
        step_bake_s = traffic_shift.scaled_minutes_s(settings["step_bake_time_min"], cluster.time_scale)
    if rollback_after_s is None:
        rollback_after_s = bake_s / 2
    if not 0 <= rollback_after_s <= bake_s:
        raise ValueError(f"a rollback after {rollback_after_s:g} s is not during the bake of {bake_s:g} s")
    if probes < 0:
        raise ValueError(f"probes={probes} must not be negative")
    step_percent = float(settings["traffic_step_percent"])
    steps = traffic_shift.schedule(strategy, step_percent=step_percent, step_bake_s=step_bake_s)
    blue = tuple(cluster.serving())
    if not blue:
        raise ValueError("no server is serving: start the twin (or add a server) before a deployment")
    run = _Run(cluster, strategy, resolve_hook(hook), blue)
    with _probes(cluster, probes) as probe_clients:
        report = run.forward(steps, bake_s, rollback_after_s if rollback else None)
        if probe_clients is None:
            return report
        count = probe_clients.finish()
    cluster.say(f"deploy {strategy}: {count.render()}")
    return _with_probes(report, count)


@contextlib.contextmanager
def _probes(cluster: TwinCluster, n: int) -> Iterator[ProbeClients | None]:
    if n == 0:
        yield None
        return
    clients = ProbeClients(
        url=cluster.url, redis_url=cluster.redis.url, token=cluster.token, settings=cluster.settings, clients=n
    )
    with clients:
        cluster.say(f"probes: {n} clients connected, sending numbered messages, pushes and publications")
        yield clients


def _with_probes(report: DeployReport, count: ProbeCount) -> DeployReport:
    return replace(report, probes=count)


class _Run:
    """One deployment's stages (see :func:`deploy`)."""

    def __init__(self, cluster: TwinCluster, strategy: str, hook: Hook | None, blue: tuple[str, ...]) -> None:
        self.cluster = cluster
        self.strategy = strategy
        self.hook = hook
        self.blue = blue
        self.blue_backend = cluster.production
        self.green_backend = other_backend(self.blue_backend)
        self.started = time.monotonic()
        self.stages: list[Stage] = []
        #: Blue's servers a rollback replaced because they no longer served.
        self.drained: tuple[str, ...] = ()

    def stage(self, name: str, began: float) -> None:
        self.stages.append(Stage(name, began - self.started, time.monotonic() - began))
        self.cluster.say(f"deploy {self.strategy}: {name} done in {time.monotonic() - began:.2f} s")

    def set_green(self, weight: int) -> None:
        value = traffic_shift.alternate_weight(weight, green_is_alternate=self.green_backend == ALTERNATE_BACKEND)
        self.cluster.api.set_map(self.cluster.weights_map, ALTERNATE_WEIGHT_KEY, str(value))

    def run_hook(self, name: str, servers: tuple[str, ...]) -> int:
        """Run the hook on ``servers``; returns the migration hook's calls (0 for another hook, or none)."""
        if self.hook is None:
            return 0
        began = time.monotonic()
        self.hook(self.cluster, servers)
        self.stage(name, began)
        calls = getattr(self.hook, "calls", None)
        return len(calls) if isinstance(calls, list) else 0

    def forward(
        self, steps: list[traffic_shift.ShiftStep], bake_s: float, rollback_after_s: float | None
    ) -> DeployReport:
        cluster, say, strategy = self.cluster, self.cluster.say, self.strategy
        blue, blue_backend, green_backend = self.blue, self.blue_backend, self.green_backend
        announcements = ReconnectAnnouncements(cluster.redis.url, frozenset(blue))
        back: ReconnectAnnouncements | None = None
        rolled: RollbackReport | None = None
        try:
            with _Counters(cluster) as counters:
                began = time.monotonic()
                green = tuple(cluster.add(backend=green_backend).name for _ in blue)
                self.stage("scale up", began)
                if rollback_after_s is not None:
                    back = ReconnectAnnouncements(cluster.redis.url, frozenset(green))

                counts: list[StepCount] = []
                began = time.monotonic()
                for step in steps:
                    self.set_green(step.green_weight)
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
                self.stage("production traffic shift", began)
                at_shift = _connections(cluster, blue_backend, blue)

                hook_calls = self.run_hook("hook", blue)
                began = time.monotonic()
                _hold(announcements, bake_s if rollback_after_s is None else rollback_after_s)
                self.stage("bake" if rollback_after_s is None else "bake until the rollback", began)

                began = time.monotonic()
                after = counters.totals()
                counts.append(
                    StepCount(
                        steps[-1].green_percent,
                        after[blue_backend] - final_before[blue_backend],
                        after[green_backend] - final_before[green_backend],
                    )
                )
                if rollback_after_s is None or back is None:
                    cut, at_cleanup, exit_codes = _cleanup(cluster, blue_backend, blue, announcements)
                    cluster.production = green_backend
                    self.stage("cleanup", began)
                else:
                    cut, at_cleanup, exit_codes = 0, 0, ()
                    rolled = self.roll_back(green, back, rollback_after_s)
                    _, _, drained_codes = self.stop_drained(rolled, announcements)
                    rolled = _with_exit_codes(rolled, drained_codes)
                samples = list(counters.samples)
        finally:
            announcements.close()
            if back is not None:
                back.close()
        users = announcements.channels
        return DeployReport(
            strategy=strategy,
            blue=blue,
            green=green,
            stages=tuple(self.stages),
            steps=tuple(counts),
            blue_connections_at_shift=at_shift,
            blue_connections_at_cleanup=at_cleanup,
            cut=cut,
            moved=len(users),
            moved_more_than_once=sum(1 for n in users.values() if n > 1),
            blue_handshakes_after_shift=counts[-1].blue_handshakes,
            peak_handshakes_per_s=peak_rate_per_s(samples),
            exit_codes=exit_codes,
            hooked=self.hook is not None,
            hook_calls=hook_calls,
            rollback=rolled,
        )

    def roll_back(
        self, green: tuple[str, ...], announcements: ReconnectAnnouncements, after_s: float
    ) -> RollbackReport:
        """Replace drained blue servers, weights back to blue, the hook on green, green stopped."""
        cluster, say = self.cluster, self.cluster.say
        began = time.monotonic()
        path = cluster.settings["health_check_path"]
        drained = [n for n in self.blue if http_status(cluster.procs[n].port, path) != 200]
        replaced: list[tuple[str, str]] = []
        for name in drained:
            new = cluster.add(backend=self.blue_backend).name
            say(f"rollback: blue {name} no longer serves (drained); {new} replaces it")
            replaced.append((name, new))
        self.drained = tuple(drained)
        if replaced:
            self.stage("rollback: blue scaled up", began)

        began = time.monotonic()
        self.set_green(0)
        say(f"deploy {self.strategy}: rollback: production shifted back to 100 % blue")
        _hold(announcements, SETTLE_S)
        green_connections = _connections(cluster, self.green_backend, green)
        self.stage("rollback: production traffic shift", began)
        self.run_hook("rollback: hook", green)

        began = time.monotonic()
        cut, _, exit_codes = _cleanup(cluster, self.green_backend, green, announcements, role="green")
        self.stage("rollback: cleanup", began)
        users = announcements.channels
        return RollbackReport(
            after_s=after_s,
            replaced=tuple(replaced),
            green_connections=green_connections,
            moved_back=len(users),
            moved_back_more_than_once=sum(1 for n in users.values() if n > 1),
            cut=cut,
            exit_codes=exit_codes,
        )

    def stop_drained(
        self, rolled: RollbackReport, announcements: ReconnectAnnouncements
    ) -> tuple[int, int, tuple[int | None, ...]]:
        """Stop the blue servers the rollback replaced (they hold nothing: the migration moved their clients)."""
        if not self.drained:
            return 0, 0, ()
        began = time.monotonic()
        result = _cleanup(self.cluster, self.blue_backend, self.drained, announcements, role="drained blue")
        self.stage("rollback: drained blue stopped", began)
        return result


def _with_exit_codes(rolled: RollbackReport, blue_exit_codes: tuple[int | None, ...]) -> RollbackReport:
    return replace(rolled, exit_codes=(*rolled.exit_codes, *blue_exit_codes))


def _hold(announcements: ReconnectAnnouncements, seconds: float) -> None:
    """Wait ``seconds`` while counting reconnect instructions."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        announcements.read(min(0.05, left))


def _connections(cluster: TwinCluster, backend: str, names: Sequence[str]) -> int:
    sessions = cluster.api.current_sessions(backend)
    return sum(sessions.get(n, 0) for n in names)


def _cleanup(
    cluster: TwinCluster,
    backend: str,
    blue: Sequence[str],
    announcements: ReconnectAnnouncements,
    *,
    role: str = "blue",
) -> tuple[int, int, tuple[int | None, ...]]:
    """Stop every ``blue`` server together in the ECS order; returns (cut, connections at start, exit codes).

    ``role`` names them in the log (``green`` when a rollback stops green)."""
    procs = [cluster.procs[n] for n in blue]
    for proc in procs:
        proc.phase = "deregistering"
        cluster.api.set_state(backend, proc.name, "maint")
    at_start = _connections(cluster, backend, blue)
    delay_s = deregistration_delay_s(cluster.settings)
    names = "/".join(blue)
    cluster.say(f"cleanup: {role} {names} deregistered with {at_start} connection(s); waiting up to {delay_s:g} s")
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
    cluster.say(f"cleanup: {role} SIGTERM, exit codes {', '.join(str(p.exit_code) for p in procs)}")
    announcements.read_until_quiet(ANNOUNCEMENT_GRACE_S)
    return remaining, at_start, tuple(p.exit_code for p in procs)
