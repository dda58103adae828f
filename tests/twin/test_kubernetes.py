"""The twin on ``platform="eks"``: the rollout budget, the counters, the reports, and a pod deletion's order
(preStop, SIGTERM when it returns, SIGKILL at the grace period) with your own server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stickyws.localproc import pid_alive
from stickyws.settings import Settings, SettingsError
from stickyws.twin import kubernetes
from stickyws.twin.cli import execute
from stickyws.twin.cluster import TwinCluster
from stickyws.twin.kubernetes import PodDeletionReport, PodTiming, RolloutReport, rollout_budget, server_counters
from stickyws.twin.processes import TwinError, literal
from tests.e2e.support import require_binaries


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [(3, 25, 0, (1, 0)), (4, 25, 25, (1, 1)), (10, 0, 10, (0, 1)), (2, 100, 0, (2, 0)), (3, 10, 30, (1, 0))],
)
def test_the_rollout_budget_rounds_surge_up_and_unavailable_down(
    replicas: int, surge: int, unavailable: int, expected: tuple[int, int]
) -> None:
    """maxSurge is rounded up and maxUnavailable down, as a Deployment computes them from percentages."""
    assert rollout_budget(replicas, surge, unavailable) == expected


def test_a_budget_that_could_not_progress_is_refused_with_the_fix() -> None:
    """0 % surge and a share of unavailable that rounds down to 0 pods cannot progress: the error says what to raise."""
    with pytest.raises(TwinError, match="raise max_surge_percent"):
        rollout_budget(3, 0, 25)


STAT = (
    "# pxname,svname,scur,stot,econ,hrsp_2xx,hrsp_5xx,status\n"
    "stickyws,FRONTEND,4,90,,80,7,OPEN\n"
    "servers,s1,2,40,3,30,5,UP\n"
    "servers,s2,2,45,0,44,0,UP\n"
    "servers,BACKEND,4,85,3,74,5,UP\n"
    "alternate,s1,0,0,9,0,9,MAINT\n"
)


def test_server_counters_read_the_5xx_answers_and_connect_errors_of_one_backend() -> None:
    """Only the named backend's servers, with hrsp_5xx and econ (an empty field is 0)."""
    assert server_counters(STAT, "servers") == {"s1": {"hrsp_5xx": 5, "econ": 3}, "s2": {"hrsp_5xx": 0, "econ": 0}}
    assert server_counters(STAT, "alternate") == {"s1": {"hrsp_5xx": 9, "econ": 9}}


def test_the_timing_comes_from_the_settings_and_the_hook_may_override_the_delay() -> None:
    """Propagation, delay and grace are the settings' seconds (not scaled); an override replaces the delay only."""
    settings = Settings().with_overrides({"pre_stop_delay_s": 12, "deregistration_propagation_s": 9})
    assert PodTiming.of(settings) == PodTiming(12.0, 90.0, 9.0, 60.0)
    assert PodTiming.of(settings, pre_stop_delay_s=0) == PodTiming(0.0, 90.0, 9.0, 60.0)


def _deletion(name: str, *, refused: int = 0, cut: int = 0, sigkill: bool = False) -> PodDeletionReport:
    return PodDeletionReport(
        name=name, hook="drain-self", pre_stop_delay_s=4, connections_at_start=20, pre_stop_s=5.52,
        deregistered_s=3, sigterm_s=5.52, exited_s=5.6, sigkill=sigkill, exit_code=-9 if sigkill else 0, cut=cut,
        refused=refused, told_to_reconnect=20, took_s=5.63,
    )  # fmt: skip


def test_the_reports_say_what_happened_in_one_line_per_pod_and_a_summary() -> None:
    """Each deletion line gives the hook, the deregistration, SIGTERM, the counts and the end; the summary adds up."""
    assert _deletion("s1").render() == (
        "s1: pod deleted in 5.6 s: preStop drain-self (delay 4 s) returned at 5.5 s, no new requests from 3.0 s, "
        "SIGTERM at 5.5 s; 20 connections: 20 told to reconnect, 0 cut, 0 refused handshakes; exit code 0"
    )
    assert _deletion("s2", sigkill=True, refused=1).render().endswith("1 refused handshake; SIGKILL")
    report = RolloutReport(
        ("s1", "s2"), ("s3", "s4"), 1, 0, (_deletion("s1", refused=2), _deletion("s2", cut=3)), 12.34
    )
    assert (report.moved, report.cut, report.refused) == (40, 3, 2)
    assert report.render().splitlines()[-1] == (
        "rollout: replaced 2 pods (maxSurge 1, maxUnavailable 0) in 12.3 s: 40 told to reconnect, "
        "3 connections cut, 2 refused handshakes"
    )


def test_the_platform_is_ecs_or_eks_and_eks_judges_the_kubernetes_rules() -> None:
    """An unknown platform is refused; on eks a preStop delay shorter than the propagation is refused by its
    rule, which an ECS twin does not apply."""
    with pytest.raises(ValueError, match="platform must be ecs or eks"):
        TwinCluster(Settings(), servers=1, platform="gke")
    short = Settings().with_overrides({"pre_stop_delay_s": 5, "deregistration_propagation_s": 10})
    with pytest.raises(SettingsError, match="k8s-prestop-covers-propagation"):
        TwinCluster(short, servers=1, platform="eks")
    TwinCluster(short, servers=1, platform="ecs").stop()  # never started: stop cleans up


def test_twin_up_takes_the_platform_and_eks_starts_from_settings_the_kubernetes_rules_accept() -> None:
    """`twin up --platform eks` parses (ecs by default, nothing else), and its demo settings pass the rules of a
    Kubernetes twin: a preStop wait beyond the propagation, inside the grace period."""
    from stickyws.cli import build_parser
    from stickyws.twin.cli import _settings
    from stickyws.twin.cluster import EKS_TWIN_PARTS

    parser = build_parser()
    assert parser.parse_args(["twin", "up"]).platform == "ecs"
    args = parser.parse_args(["twin", "up", "--platform", "eks"])
    assert args.platform == "eks"
    with pytest.raises(SystemExit):
        parser.parse_args(["twin", "up", "--platform", "gke"])
    settings = _settings(args)
    assert (settings["pre_stop_delay_s"], settings["deregistration_propagation_s"]) == (3, 2)
    settings.check(EKS_TWIN_PARTS)


class _EksCluster:
    platform = "eks"


def test_the_eks_commands_run_a_deletion_and_rollouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """`delete NAME`, `deploy` and `deploy-no-prestop` reach the kubernetes module (the last with delay 0)."""
    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(kubernetes, "delete", lambda cluster, name: calls.append(("delete", name)))
    monkeypatch.setattr(
        kubernetes, "rollout", lambda cluster, pre_stop_delay_s=None: calls.append(("rollout", pre_stop_delay_s))
    )
    lines: list[str] = []
    for words in (["delete", "s2"], ["deploy"], ["deploy-no-prestop"]):
        assert execute(_EksCluster(), words, lines.append) == "ok"
    assert calls == [("delete", "s2"), ("rollout", None), ("rollout", 0)]
    assert lines == []


#: Your own server for the deletion test: /health 200; ``s2`` ignores SIGTERM (only SIGKILL ends it).
OWN_SERVER = """
import signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port, name = int(sys.argv[1]), sys.argv[2]
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
signal.signal(signal.SIGTERM, signal.SIG_IGN if name == "s2" else (lambda *_: sys.exit(0)))
HTTPServer(("127.0.0.1", port), H).serve_forever(poll_interval=0.05)
"""


def test_an_own_servers_pod_gets_sigterm_after_the_sleep_and_sigkill_at_the_grace_period(tmp_path: Path) -> None:
    """Own server: the preStop hook is a sleep of pre_stop_delay_s (1 s), SIGTERM follows it; a server that
    ignores SIGTERM is killed at termination_grace_period_s (3 s). No process is left behind."""
    require_binaries()
    settings = Settings().with_overrides(
        {"server_mode": "own", "pre_stop_delay_s": 1, "deregistration_propagation_s": 0,
         "termination_grace_period_s": 3, "deregistration_delay_s": 2}
    )  # fmt: skip
    command = [sys.executable, "-c", literal(OWN_SERVER), "{port}", "{server_id}"]
    with TwinCluster(settings, servers=2, time_scale=0.05, server_cmd=command, platform="eks") as twin:
        pids = twin.pids()
        polite = kubernetes.delete(twin, "s1")
        stubborn = kubernetes.delete(twin, "s2")
        with pytest.raises(TwinError, match="no running pod named 's1'"):
            kubernetes.delete(twin, "s1")
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert (polite.hook, stubborn.hook) == ("sleep", "sleep")
    assert 1.0 <= polite.sigterm_s < 1.3
    assert (polite.exit_code, polite.sigkill, polite.cut, polite.refused) == (0, False, 0, 0)
    assert stubborn.pre_stop_s is not None
    assert 1.0 <= stubborn.sigterm_s < 1.3
    assert stubborn.sigkill
    assert 3.0 <= stubborn.exited_s < 3.3
    assert stubborn.render().endswith("SIGKILL")
