"""Kubernetes in the twin (``--platform eks``): a pod's deletion and a Deployment's rollout, in the order
the kubelet and the AWS Load Balancer Controller act.

Deleting a pod starts two things at the same moment ``t0`` (there is no "drain first, SIGTERM
later" as on ECS):

* **the kubelet** runs the pod's preStop hook: for the reference server ``stickyws server drain-self``
  in the server's environment (the server keeps serving for ``pre_stop_delay_s``, then drains and
  the hook returns when the drain has ended); for your own server a ``sleep`` of
  ``pre_stop_delay_s``. SIGTERM follows when the hook returns; SIGKILL at
  ``termination_grace_period_s`` after ``t0``. A hook still running at the grace period gets
  SIGTERM then and a one-off 2 s extension (:data:`GRACE_EXTENSION_S`) before SIGKILL, as the
  kubelet gives it.
* **the controller** deregisters the pod's target, and the change reaches the load balancer only
  later: HAProxy keeps sending the pod new requests for ``deregistration_propagation_s``, then
  the target is drained (``state maint``: no new requests, open tunnels stay) for up to
  ``deregistration_delay_s``, ending early once the pod holds no connection, then what is left
  is cut (``shutdown sessions``).

The propagation is not shortened by the twin's ``time_scale`` (which scales health checks
only), nor are the preStop delay and the grace period: they are the settings' seconds. During
the propagation the twin stops HAProxy's health checks of the pod (``disable health``), so HAProxy
routes to it whatever it answers: the ALB's checks (at least 2 x 5 s) take about as long as the
propagation to notice a draining or exited pod, while the twin's scaled checks would notice it
within a fraction of a second and hide what the propagation does.

A rollout (:func:`rollout`) replaces every serving pod as a Deployment does under ``maxSurge`` and
``maxUnavailable`` (``max_surge_percent`` of the replicas rounded up, ``max_unavailable_percent``
rounded down): it starts new pods, each ready only once registered and healthy in HAProxy (the
pod readiness gate), and deletes old pods while the ready pods stay at least ``replicas -
maxUnavailable``. A terminating pod no longer counts, so the next new pod starts while an old one
drains.

What is counted per pod (:class:`PodDeletionReport`): connections at ``t0``, reconnect
instructions the server announced (``ws:reconnect:{userId}``), handshakes HAProxy sent the pod
that failed (503 from a draining server, or a refused connect once it exited: ``hrsp_5xx`` +
``econ`` of ``show stat``), and connections cut at the end of the deregistration delay.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stickyws.localproc import kill_pid, start_process
from stickyws.settings import Settings, server_environment
from stickyws.twin.haproxy_config import BACKEND
from stickyws.twin.operations import ANNOUNCEMENT_GRACE_S, ReconnectAnnouncements, connections
from stickyws.twin.processes import ServerProcess, TwinError
from stickyws.twin.runtime_api import RuntimeApi, RuntimeApiError

if TYPE_CHECKING:
    from stickyws.twin.cluster import TwinCluster

#: The platforms a twin models: ``ecs`` (the ECS stop sequence) and ``eks`` (this module).
PLATFORMS = ("ecs", "eks")
#: The kubelet's one-off extension for a preStop hook still running at the grace period.
GRACE_EXTENSION_S = 2.0
#: How often a pod deletion looks at HAProxy, the hook and the process.
POLL_S = 0.02


@dataclass(frozen=True)
class PodTiming:
    """A pod deletion's timing, in seconds from ``t0`` (the settings; see the module doc)."""

    pre_stop_delay_s: float
    termination_grace_period_s: float
    deregistration_propagation_s: float
    deregistration_delay_s: float

    @classmethod
    def of(cls, settings: Settings, *, pre_stop_delay_s: float | None = None) -> PodTiming:
        """The timing ``settings`` give (``pre_stop_delay_s`` overrides the setting: the hook's own delay)."""
        return cls(
            float(settings["pre_stop_delay_s"] if pre_stop_delay_s is None else pre_stop_delay_s),
            float(settings["termination_grace_period_s"]),
            float(settings["deregistration_propagation_s"]),
            float(settings["deregistration_delay_s"]),
        )


@dataclass(frozen=True)
class PodDeletionReport:
    """What one pod deletion did (seconds from ``t0``; counts as the module doc says).

    ``pre_stop_s``: when the hook returned (``None``: it ran past the grace period);
    ``sigterm_s``/``exited_s``: when SIGTERM was sent and the process exited; ``sigkill``: whether it
    had to be killed; ``cut``: connections still open at the end of the deregistration delay;
    ``refused``: handshakes HAProxy sent the pod that failed; ``told_to_reconnect``: reconnect
    instructions the server announced; ``hook_output``: the hook's last line (the reference server's
    ``drain-self``), empty for a sleep.
    """

    name: str
    hook: str
    pre_stop_delay_s: float
    connections_at_start: int
    pre_stop_s: float | None
    deregistered_s: float
    sigterm_s: float
    exited_s: float
    sigkill: bool
    exit_code: int | None
    cut: int
    refused: int
    told_to_reconnect: int
    took_s: float
    hook_output: str = ""

    def render(self) -> str:
        """One line: ``s1: pod deleted in 4.1 s: preStop drain-self (delay 2 s) returned at 3.2 s, ...``."""
        hook = f"preStop {self.hook} (delay {self.pre_stop_delay_s:g} s) " + (
            f"returned at {self.pre_stop_s:.1f} s" if self.pre_stop_s is not None else "ran past the grace period"
        )
        end = "SIGKILL" if self.sigkill else f"exit code {self.exit_code}"
        return (
            f"{self.name}: pod deleted in {self.took_s:.1f} s: {hook}, "
            f"no new requests from {self.deregistered_s:.1f} s, "
            f"SIGTERM at {self.sigterm_s:.1f} s; {self.connections_at_start} connection"
            f"{'s' if self.connections_at_start != 1 else ''}: {self.told_to_reconnect} told to reconnect, "
            f"{self.cut} cut, {self.refused} refused handshake{'s' if self.refused != 1 else ''}; {end}"
        )


@dataclass(frozen=True)
class RolloutReport:
    """A rollout: old and new pods, the budget it kept, and every deletion's report (in deletion order)."""

    old: tuple[str, ...]
    new: tuple[str, ...]
    max_surge: int
    max_unavailable: int
    deletions: tuple[PodDeletionReport, ...]
    took_s: float

    @property
    def moved(self) -> int:
        """Reconnect instructions the old pods announced."""
        return sum(d.told_to_reconnect for d in self.deletions)

    @property
    def cut(self) -> int:
        """Connections cut at the end of a deregistration delay."""
        return sum(d.cut for d in self.deletions)

    @property
    def refused(self) -> int:
        """Handshakes HAProxy sent a terminating pod that failed."""
        return sum(d.refused for d in self.deletions)

    def render(self) -> str:
        """One line per deletion, then the summary."""
        lines = [d.render() for d in self.deletions]
        lines.append(
            f"rollout: replaced {len(self.old)} pods (maxSurge {self.max_surge}, "
            f"maxUnavailable {self.max_unavailable}) in {self.took_s:.1f} s: {self.moved} told to reconnect, "
            f"{self.cut} connections cut, {self.refused} refused handshakes"
        )
        return "\n".join(lines)


def rollout_budget(replicas: int, max_surge_percent: int, max_unavailable_percent: int) -> tuple[int, int]:
    """``(maxSurge, maxUnavailable)`` in pods, as a Deployment computes them from percentages.

    maxSurge rounds up, maxUnavailable down; both 0 is refused (a Deployment could not progress).
    """
    surge = math.ceil(replicas * max_surge_percent / 100)
    unavailable = math.floor(replicas * max_unavailable_percent / 100)
    if surge == 0 and unavailable == 0:
        raise TwinError(
            f"max_surge_percent {max_surge_percent} and max_unavailable_percent {max_unavailable_percent} give "
            f"0 and 0 pods of {replicas}: a rollout could not progress; raise max_surge_percent"
        )
    return surge, unavailable


def server_counters(text: str, backend: str) -> dict[str, dict[str, int]]:
    """``{server: {"hrsp_5xx": n, "econ": n}}`` of ``backend`` from the CSV answer to ``show stat``."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise RuntimeApiError(f"unexpected 'show stat' answer: {text[:200]!r}")
    header = lines[0][2:].split(",")
    px, sv = header.index("pxname"), header.index("svname")
    wanted = {name: header.index(name) for name in ("hrsp_5xx", "econ")}
    out: dict[str, dict[str, int]] = {}
    for line in lines[1:]:
        cols = line.split(",")
        if len(cols) > max(wanted.values()) and cols[px] == backend and cols[sv] not in ("FRONTEND", "BACKEND"):
            out[cols[sv]] = {name: int(cols[i] or 0) for name, i in wanted.items()}
    return out


def failed_requests(api: RuntimeApi, backend: str, name: str) -> int:
    """Requests HAProxy sent ``name`` that failed so far: 5xx answers plus connect errors."""
    counters = server_counters(api.command("show stat"), backend).get(name, {})
    return counters.get("hrsp_5xx", 0) + counters.get("econ", 0)


def pre_stop_command(port: int, pre_stop_delay_s: float | None) -> list[str]:
    """The reference server's preStop hook: ``stickyws server drain-self`` for the server on ``port``."""
    args = [sys.executable, "-m", "stickyws.cli", "server", "drain-self", "--port", str(port)]
    if pre_stop_delay_s is not None:
        args += ["--delay-s", f"{pre_stop_delay_s:g}"]
    return args


def delete_pod(
    api: RuntimeApi,
    proc: ServerProcess,
    *,
    settings: Settings,
    redis_url: str,
    reference: bool,
    workdir: Path,
    say: Callable[[str], None],
    backend: str = BACKEND,
    pre_stop_delay_s: float | None = None,
) -> PodDeletionReport:
    """Delete the pod of ``proc`` (see the module doc); returns what it measured.

    ``reference``: the pod runs the reference server (its hook is ``drain-self``; else a sleep).
    ``pre_stop_delay_s``: the hook's delay instead of the setting (``drain-self --delay-s``).
    """
    name = proc.name
    timing = PodTiming.of(settings, pre_stop_delay_s=pre_stop_delay_s)
    proc.phase = "terminating"
    announcements = ReconnectAnnouncements(redis_url, name)
    hook_log = workdir / f"prestop-{name}.log"
    hook = None
    try:
        refused_before = failed_requests(api, backend, name)
        at_start = connections(api, name, backend)
        api.command(f"disable health {backend}/{name}")  # see the module doc: no check notices the drain meanwhile
        t0 = time.monotonic()
        if reference:
            env = {**os.environ, **server_environment(settings)}
            hook = start_process(pre_stop_command(proc.port, pre_stop_delay_s), env=env, log_path=hook_log)
        say(
            f"{name}: pod deleted with {at_start} connection(s): preStop "
            f"{'drain-self' if reference else 'sleep'} {timing.pre_stop_delay_s:g} s, deregistration reaches "
            f"the load balancer in {timing.deregistration_propagation_s:g} s"
        )
        pre_stop_s: float | None = None
        deregistered = cut_done = False
        sigterm_s: float | None = None
        exited_s: float | None = None
        kill_at = timing.termination_grace_period_s
        cut = 0
        while True:
            now = time.monotonic() - t0
            if not deregistered and now >= timing.deregistration_propagation_s:
                api.set_state(backend, name, "maint")
                deregistered = True
                say(f"{name}: deregistered (maint) at {now:.1f} s with {connections(api, name, backend)} connection(s)")
            if deregistered and not cut_done:
                remaining = connections(api, name, backend)
                if remaining == 0 or now >= timing.deregistration_propagation_s + timing.deregistration_delay_s:
                    api.shutdown_sessions(backend, name)
                    cut, cut_done = remaining, True
                    say(f"{name}: deregistration delay over at {now:.1f} s, {remaining} connection(s) cut")
            if sigterm_s is None:
                done = hook.poll() is not None if hook is not None else now >= timing.pre_stop_delay_s
                if done:
                    pre_stop_s = now
                if done or now >= timing.termination_grace_period_s:
                    if not done:
                        kill_at = timing.termination_grace_period_s + GRACE_EXTENSION_S
                    if proc.alive:
                        proc.proc.send_signal(signal.SIGTERM)
                    sigterm_s = now
                    say(f"{name}: SIGTERM at {now:.1f} s" + ("" if done else " (the preStop hook ran past the grace)"))
            if exited_s is None and not proc.alive:
                exited_s = now
            elif exited_s is None and sigterm_s is not None and now >= kill_at:
                kill_pid(proc.proc)
                exited_s = now
                say(f"{name}: SIGKILL at {now:.1f} s (termination_grace_period_s)")
            if cut_done and exited_s is not None and (hook is None or hook.poll() is not None):
                break
            if hook is not None and exited_s is not None and hook.poll() is None and now >= kill_at:
                kill_pid(hook)  # the container is gone: so is its hook
            announcements.read(POLL_S)
        took_s = time.monotonic() - t0
        proc.proc.wait(timeout=5)
        proc.exit_code = proc.proc.returncode
        proc.phase = "stopped"
        refused = failed_requests(api, backend, name) - refused_before
        announcements.read_until_quiet(ANNOUNCEMENT_GRACE_S)
    finally:
        if hook is not None and hook.poll() is None:
            kill_pid(hook)
        announcements.close()
    output = hook_log.read_text(encoding="utf-8", errors="replace").strip().splitlines() if hook_log.exists() else []
    assert sigterm_s is not None
    assert exited_s is not None
    report = PodDeletionReport(
        name=name,
        hook="drain-self" if reference else "sleep",
        pre_stop_delay_s=timing.pre_stop_delay_s,
        connections_at_start=at_start,
        pre_stop_s=pre_stop_s,
        deregistered_s=timing.deregistration_propagation_s,
        sigterm_s=sigterm_s,
        exited_s=exited_s,
        sigkill=proc.exit_code == -signal.SIGKILL,
        exit_code=proc.exit_code,
        cut=cut,
        refused=refused,
        told_to_reconnect=announcements.count,
        took_s=took_s,
        hook_output=output[-1] if output else "",
    )
    say(report.render())
    return report


def delete(cluster: TwinCluster, name: str, *, pre_stop_delay_s: float | None = None) -> PodDeletionReport:
    """Delete the pod ``name`` of ``cluster`` (see :func:`delete_pod`)."""
    proc = cluster.procs.get(name)
    if proc is None or not proc.alive:
        running = ", ".join(cluster.serving()) or "none"
        raise TwinError(f"no running pod named {name!r}; the serving pods are {running}")
    return delete_pod(
        cluster.api,
        proc,
        settings=cluster.settings,
        redis_url=cluster.redis.url,
        reference=cluster.server_cmd is None,
        workdir=cluster.dir,
        say=cluster.say,
        backend=cluster.production,
        pre_stop_delay_s=pre_stop_delay_s,
    )


def rollout(cluster: TwinCluster, *, pre_stop_delay_s: float | None = None) -> RolloutReport:
    """Replace every serving pod of ``cluster`` as a Deployment does (see the module doc).

    ``pre_stop_delay_s``: the old pods' preStop delay instead of the setting (``0``: no delay).
    """
    started = time.monotonic()
    old = tuple(cluster.serving())
    replicas = len(old)
    surge, unavailable = rollout_budget(
        replicas, int(cluster.settings["max_surge_percent"]), int(cluster.settings["max_unavailable_percent"])
    )
    cluster.say(f"rollout: {replicas} pods, maxSurge {surge}, maxUnavailable {unavailable}")
    left = list(old)
    new: list[str] = []
    futures: list[Future[PodDeletionReport]] = []
    with ThreadPoolExecutor(max_workers=replicas, thread_name_prefix="stickyws-pod-delete") as pool:
        while left:
            create = min(replicas + surge - (len(left) + len(new)), replicas - len(new))
            for _ in range(max(0, create)):
                pod = cluster.add()  # ready once registered and healthy: the readiness gate
                new.append(pod.name)
            deletable = min(len(left), len(left) + len(new) - (replicas - unavailable))
            if deletable <= 0 and create <= 0:
                raise TwinError(f"rollout stuck with {len(left)} old and {len(new)} new pods")  # pragma: no cover
            for name in left[: max(0, deletable)]:
                cluster.say(f"rollout: deleting {name} ({len(new)} new pod(s) ready)")
                futures.append(pool.submit(delete, cluster, name, pre_stop_delay_s=pre_stop_delay_s))
            left = left[max(0, deletable) :]
        reports = tuple(f.result() for f in futures)
    report = RolloutReport(old, tuple(new), surge, unavailable, reports, time.monotonic() - started)
    cluster.say(report.render().splitlines()[-1])
    return report
