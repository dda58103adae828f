"""A Kubernetes rollout in the twin (``platform="eks"``): with the preStop delay every client moves and
nothing is lost; the same rollout with a preStop delay of 0 sends reconnects into a draining pod.

On Kubernetes the pod's preStop hook and the deregistration of its target start together, and the
load balancer keeps sending the pod new requests until the deregistration has propagated. Both runs
replace the three pods one at a time (maxSurge 1, maxUnavailable 0, each new pod ready in HAProxy
before an old one is deleted) while every client sends a numbered stream. The first run keeps the
settings' preStop delay (4 s, longer than the 3 s propagation); the second asks ``drain-self`` for
no delay, so the pods drain while HAProxy still sends them reconnecting clients. The test prints one
line per run (run pytest with -s to see them).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from stickyws.client.connection import StickyClient
from stickyws.localproc import pid_alive
from stickyws.twin import kubernetes
from stickyws.twin.cluster import TwinCluster
from stickyws.twin.kubernetes import RolloutReport
from tests.e2e.support import (
    E2E_SETTINGS,
    SERVERS,
    TIME_SCALE,
    client_session,
    require_binaries,
    run,
    send_numbered,
    session_field,
    started_clients,
)

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

#: The shared e2e settings with a Kubernetes stop that the k8s rules accept: the preStop delay (4 s)
#: outlasts the propagation (3 s), the grace period (10 s) holds preStop + drain window + shutdown
#: (7.5 s), and the deregistration delay (6 s) holds preStop + drain window (5.5 s).
EKS_SETTINGS = E2E_SETTINGS.with_overrides(
    {
        "deregistration_propagation_s": 3,
        "pre_stop_delay_s": 4,
        "termination_grace_period_s": 10,
        "deregistration_delay_s": 6,
        "replicas": SERVERS,
        "max_surge_percent": 25,
        "max_unavailable_percent": 0,
    }
)
CLIENTS = 60
#: Each client sends one numbered message every this many seconds.
SEND_EVERY_S = 0.3
#: HTTP statuses of a refused handshake (503 from a draining server or from HAProxy, 502, 504).
REFUSED = (502, 503, 504)


@pytest.fixture(scope="module")
def eks_twin() -> Iterator[TwinCluster]:
    """Redis, three reference servers (pods) and HAProxy on ``platform="eks"``; none of their processes is
    left after the module."""
    require_binaries()
    with TwinCluster(EKS_SETTINGS, servers=SERVERS, time_scale=TIME_SCALE, platform="eks") as twin:
        pids = twin.pids()
        yield twin
        pids = sorted({*pids, *twin.pids()})
    assert [pid for pid in pids if pid_alive(pid)] == []


@dataclass(frozen=True)
class RolloutRun:
    """What one rollout under load measured: the twin's report and the clients' view."""

    report: RolloutReport
    sent: int
    lost: int
    doubled: int
    moved_clients: int
    #: Clients that received at least one ``reconnect`` frame.
    told_clients: int
    abrupt_1006: int
    refused_handshakes: int

    def line(self, label: str) -> str:
        """The comparison line printed by the test."""
        r = self.report
        return (
            f"eks rollout {label}: {CLIENTS} clients, {self.sent} messages, {self.lost} lost, {self.doubled} doubled, "
            f"{self.moved_clients} clients moved, {self.told_clients} told to; "
            f"twin: {r.moved} told to reconnect, {r.cut} cut, {r.refused} refused handshakes; "
            f"clients: {self.abrupt_1006} abrupt 1006, "
            f"{self.refused_handshakes} refused handshakes; rollout {r.took_s:.1f} s"
        )


def _rollout_under_load(twin: TwinCluster, *, label: str, pre_stop_delay_s: float | None) -> RolloutRun:
    old = set(twin.serving())

    async def scenario() -> RolloutRun:
        async with client_session() as session:
            rng = random.Random(21)
            clients = started_clients(twin, session, EKS_SETTINGS, f"eks-{label}-", CLIENTS, rng)
            await asyncio.gather(*(c.wait_connected(30) for c in clients))
            stop = asyncio.Event()
            senders = [asyncio.create_task(send_numbered(c, stop, rng, SEND_EVERY_S)) for c in clients]
            await asyncio.sleep(0.5)
            report = await asyncio.to_thread(kubernetes.rollout, twin, pre_stop_delay_s=pre_stop_delay_s)
            stop.set()
            await asyncio.gather(*senders)
            await asyncio.gather(*(c.wait_connected(20) for c in clients))
            await asyncio.gather(*(c.wait_confirmed(20) for c in clients))
            try:
                return _measure(twin, clients, old, report)
            finally:
                await asyncio.gather(*(c.close() for c in clients))

    return run(scenario(), timeout_s=90)


def _measure(twin: TwinCluster, clients: list[StickyClient], old: set[str], report: RolloutReport) -> RolloutRun:
    new = set(twin.serving())
    assert new == set(report.new)
    assert not new & old
    assert len(new) == len(old)
    registry = redis.Redis.from_url(twin.redis.url, decode_responses=True)
    lost = doubled = 0
    try:
        for c in clients:
            box = c.outbox
            assert c.connected
            assert c.server_id in new
            assert len(c.stats.session_ids) == 1  # one session for the whole run: every reconnect resumed
            confirmed = set(box.confirmations)
            lost += len(set(range(1, box.sent_count + 1)) - confirmed) + len(box.pending)
            doubled += sum(n - 1 for n in box.confirmations.values() if n > 1)
            assert int(session_field(registry, c, "lastClientId") or 0) == box.sent_count
    finally:
        registry.close()
    return RolloutRun(
        report=report,
        sent=sum(c.outbox.sent_count for c in clients),
        lost=lost,
        doubled=doubled,
        moved_clients=sum(1 for c in clients if set(c.stats.servers) & old and c.server_id in new),
        told_clients=sum(1 for c in clients if c.stats.reconnect_frames > 0),
        abrupt_1006=sum(c.stats.close_codes[1006] for c in clients),
        refused_handshakes=sum(c.stats.handshake_statuses[s] for c in clients for s in REFUSED),
    )


def test_a_rollout_with_the_prestop_delay_moves_every_client_and_without_it_refuses_handshakes(
    eks_twin: TwinCluster, record_property: pytest.RecordProperty
) -> None:
    """With the preStop delay every client moves, 0 lost, 0 cut, 0 refused; with a delay of 0 the same
    rollout loses nothing (resume + resend) but HAProxy sends reconnecting clients into draining pods."""
    started = time.monotonic()
    good = _rollout_under_load(eks_twin, label="prestop", pre_stop_delay_s=None)
    bad = _rollout_under_load(eks_twin, label="no-prestop", pre_stop_delay_s=0)
    for label, r in (("with preStop delay 4 s", good), ("with preStop delay 0  ", bad)):
        print(r.line(label))
        record_property(f"eks_rollout_{'bad' if r is bad else 'good'}", r.line(label))
    for r in (good, bad):
        assert (r.lost, r.doubled) == (0, 0)
        assert r.moved_clients == CLIENTS  # every client ended on a new pod
        assert len(r.report.deletions) == SERVERS
        assert all(d.exit_code == 0 and not d.sigkill for d in r.report.deletions)
    assert [d.hook for d in good.report.deletions] == ["drain-self"] * SERVERS
    assert all(d.pre_stop_delay_s == 4 for d in good.report.deletions)
    assert all(d.hook_output.startswith("drain-self: drained (k8s-prestop)") for d in good.report.deletions)
    assert good.told_clients == CLIENTS  # every client was told to move at least once
    assert good.report.moved > 0  # the twin saw the old pods announce it (a pub/sub count: a floor, not exact)
    assert (good.report.cut, good.report.refused) == (0, 0)
    assert (good.abrupt_1006, good.refused_handshakes) == (0, 0)
    assert bad.report.cut + bad.report.refused > 0
    assert bad.abrupt_1006 + bad.refused_handshakes > 0
    assert time.monotonic() - started < 60


def test_the_twins_pods_are_the_rendered_pods() -> None:
    """The Deployment `stickyws k8s render` makes of the same settings has the hook the twin runs (drain-self, the
    delay from the server's STICKYWS_PRE_STOP_DELAY_S), the grace period and the rollout budget the twin applies."""
    from stickyws.k8s.app import WebSocketApp
    from stickyws.k8s.render import render

    documents = {doc["kind"]: doc for doc in render(WebSocketApp(EKS_SETTINGS)).documents}
    deployment = documents["Deployment"]["spec"]
    pod = deployment["template"]["spec"]
    (container,) = pod["containers"]
    twin_hook = kubernetes.pre_stop_command(8080, None)
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["stickyws", *twin_hook[3:5]]
    assert twin_hook[3:] == ["server", "drain-self", "--port", "8080"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["STICKYWS_PRE_STOP_DELAY_S"] == "4"
    timing = kubernetes.PodTiming.of(EKS_SETTINGS)
    assert pod["terminationGracePeriodSeconds"] == timing.termination_grace_period_s == 10
    assert deployment["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "0%"}
    assert kubernetes.rollout_budget(SERVERS, 25, 0) == (1, 0)
