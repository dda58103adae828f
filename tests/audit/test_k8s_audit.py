"""`stickyws audit --k8s`: Kubernetes manifests judged with the settings model's rules, each hazard with its fix.

The fixtures in tests/audit/k8s_fixtures/ are written the way public charts and tools print them:
`helm template` output with `# Source:` comments and `---` separators (helm-template-clean.yaml, a reference
server that passes), a chart's plain ALB Ingress (plain-ingress-chart.yaml), Gateway API with the
controller's LoadBalancerConfiguration and TargetGroupConfiguration (gateway-api.yaml, your own server) and
`kubectl get deploy,svc,ing,pdb,pod -o yaml` (kubectl-get-list.yaml, a `kind: List`). Each hazard test changes
one line of the clean set and asserts that exactly its rule fails, with the fix and where the manifests say it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from stickyws.audit.checks import Audit, CheckResult, Status
from stickyws.audit.k8s import ManifestError, audit_manifests, audit_objects, parse_manifests
from stickyws.audit.k8s.checks import KUBERNETES_CHECK_IDS
from stickyws.audit.report import to_json
from stickyws.cli import main
from stickyws.settings import Scope

FIXTURES = Path(__file__).parent / "k8s_fixtures"
CLEAN = FIXTURES / "helm-template-clean.yaml"


def _audit(name: str, *, assume: dict[str, str] | None = None) -> Audit:
    return audit_manifests([str(FIXTURES / name)], assume)


def _clean_with(old: str, new: str, *more: tuple[str, str]) -> Audit:
    """The clean helm-template set with pieces of text replaced (each must occur exactly once)."""
    text = CLEAN.read_text(encoding="utf-8")
    for before, after in ((old, new), *more):
        assert text.count(before) == 1, before
        text = text.replace(before, after)
    return audit_objects(parse_manifests(text, "chart.yaml"), "manifests chart.yaml")


def _row(result: Audit, rule: str) -> CheckResult:
    return result.result(rule)


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["audit", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- the clean set -------------------------------------------------------------------------------------


def test_clean_helm_template_passes(capsys: pytest.CaptureFixture[str]) -> None:
    """The helm-template set (reference server, drain-self preStop, readiness gate, PDB, HPA) passes and exits 0;
    only the registry, which no manifest shows, is a warning."""
    code, out, err = _run(["--k8s", str(CLEAN)], capsys)
    assert (code, err) == (0, "")
    result = audit_manifests([str(CLEAN)])
    assert result.failed() == []
    assert [r.rule for r in result.results if r.status is Status.WARN] == ["registry-encryption-and-auth"]
    assert result.parts == {Scope.LOAD_BALANCER, Scope.SERVER, Scope.REGISTRY, Scope.KUBERNETES}
    passed = sum(1 for r in result.results if r.status is Status.PASS)
    assert out.splitlines()[-1] == f"{passed} pass, 1 warn, 0 fail (exit 0)"


def test_clean_set_reads_the_server_container_the_service_targets() -> None:
    """Of two containers, the one whose named port the Service targets is the server; its settings come from its
    env and from the ConfigMap its envFrom names; the Kubernetes settings from the workload, PDB, HPA, Namespace."""
    result = audit_manifests([str(CLEAN)])
    assert result.notes == (
        "Deployment chat-ws has containers log-shipper, chat; reading chat, whose port Service chat-ws targets",
    )
    assert result.server_read == {
        "ping_interval_s": "30",
        "drain_window_s": "45",
        "shutdown_timeout_s": "10",
        "port": "8080",
        "pre_stop_delay_s": "15",
        "termination_grace_period_s": "90",
    }
    settings = result.settings
    assert (settings["replicas"], settings["min_replicas"], settings["max_replicas"]) == (3, 3, 10)
    assert (settings["pdb_max_unavailable"], settings["readiness_gate"], settings["k8s_target_type"]) == (1, True, "ip")
    assert (settings["max_surge_percent"], settings["max_unavailable_percent"]) == (25, 0)
    assert (settings["idle_timeout_s"], settings["http2_enabled"], settings["deregistration_delay_s"]) == (
        120,
        False,
        60,
    )
    assert _row(result, "k8s-service-targets-server").found == (
        "Service chat-ws targets 8080, the server's port (container chat)"
    )


# -- each hazard: one change to the clean set fails exactly its rule --------------------------------------


def test_http2_on_fails_http2_off() -> None:
    """routing.http2.enabled=true in the Ingress annotation fails http2-off, and the fix names the annotation."""
    result = _clean_with("routing.http2.enabled=false", "routing.http2.enabled=true")
    assert result.failed() == ["http2-off"]
    row = _row(result, "http2-off")
    assert row.found == "http2_enabled=true: clients that negotiate h2 cannot upgrade to WebSocket"
    assert row.fix == (
        "set http2_enabled=false (routing.http2.enabled=false); in the manifests: http2_enabled at Ingress chat-ws "
        "annotation alb.ingress.kubernetes.io/load-balancer-attributes: routing.http2.enabled"
    )


def test_idle_timeout_under_the_ping_interval_fails_ping_within_idle_timeout() -> None:
    """An idle timeout of 50 s against pings every 30 s fails ping-within-idle-timeout, naming both places."""
    result = _clean_with("idle_timeout.timeout_seconds=120", "idle_timeout.timeout_seconds=50")
    assert result.failed() == ["ping-within-idle-timeout"]
    row = _row(result, "ping-within-idle-timeout")
    assert row.found == "ping_interval_s=30 > idle_timeout_s/2=25: one missed ping costs the connection"
    assert row.fix == (
        "set ping_interval_s <= 25 or idle_timeout_s >= 60; in the manifests: ping_interval_s at container chat env "
        "STICKYWS_PING_INTERVAL_S; idle_timeout_s at Ingress chat-ws annotation "
        "alb.ingress.kubernetes.io/load-balancer-attributes: idle_timeout.timeout_seconds"
    )


def test_no_stickiness_fails_stickiness() -> None:
    """Without stickiness.enabled=true the target group takes AWS's default (off) and stickiness fails."""
    result = _clean_with("stickiness.enabled=true,", "")
    assert result.failed() == ["stickiness"]
    assert result.observed["stickiness_enabled"].where == (
        "Ingress chat-ws annotation alb.ingress.kubernetes.io/target-group-attributes stickiness.enabled unset: "
        "AWS default"
    )
    assert _row(result, "stickiness").fix == (
        "set stickiness_enabled=true; in the manifests: stickiness_enabled at Ingress chat-ws annotation "
        "alb.ingress.kubernetes.io/target-group-attributes: stickiness.enabled"
    )


def test_prestop_shorter_than_the_propagation_fails() -> None:
    """A 5 s preStop delay against the 10 s the deregistration takes to reach the ALB fails
    k8s-prestop-covers-propagation; the reference server's delay lives in its environment."""
    result = _clean_with(
        'STICKYWS_PRE_STOP_DELAY_S\n              value: "15"', 'STICKYWS_PRE_STOP_DELAY_S\n              value: "5"'
    )
    assert result.failed() == ["k8s-prestop-covers-propagation"]
    row = _row(result, "k8s-prestop-covers-propagation")
    assert row.found == (
        "pre_stop_delay_s=5 < deregistration_propagation_s=10: the pod drains while the ALB still sends it new "
        "handshakes, which land on a closing server"
    )
    assert row.fix == (
        "set pre_stop_delay_s >= 10; in the manifests: pre_stop_delay_s at container chat env STICKYWS_PRE_STOP_DELAY_S"
    )


def test_grace_period_shorter_than_prestop_drain_and_shutdown_fails() -> None:
    """terminationGracePeriodSeconds 60 < 15 + 45 + 10 (the server told the same 60) fails k8s-grace-covers-drain."""
    result = _clean_with(
        "terminationGracePeriodSeconds: 90",
        "terminationGracePeriodSeconds: 60",
        (
            'STICKYWS_TERMINATION_GRACE_PERIOD_S\n              value: "90"',
            'STICKYWS_TERMINATION_GRACE_PERIOD_S\n              value: "60"',
        ),
    )
    assert result.failed() == ["k8s-grace-covers-drain"]
    row = _row(result, "k8s-grace-covers-drain")
    assert row.found == (
        "termination_grace_period_s=60 < pre_stop_delay_s + drain_window_s + shutdown_timeout_s = 70: SIGKILL cuts "
        "the clients not yet moved"
    )
    assert row.fix == (
        "set termination_grace_period_s >= 70 (Kubernetes has no 120 s cap), or shorten pre_stop_delay_s, "
        "drain_window_s or shutdown_timeout_s; in the manifests: termination_grace_period_s at Deployment chat-ws: "
        "spec.template.spec.terminationGracePeriodSeconds; pre_stop_delay_s at container chat env "
        "STICKYWS_PRE_STOP_DELAY_S; drain_window_s at container chat env STICKYWS_DRAIN_WINDOW_S; "
        "shutdown_timeout_s at container chat env STICKYWS_SHUTDOWN_TIMEOUT_S"
    )


def test_no_readiness_gate_with_ip_targets_fails() -> None:
    """A Namespace without the readiness-gate label, with target-type ip, fails k8s-readiness-gate."""
    result = _clean_with("elbv2.k8s.aws/pod-readiness-gate-inject: enabled", "team: chat")
    assert result.failed() == ["k8s-readiness-gate"]
    assert (
        result.observed["readiness_gate"].where == "Namespace chat label elbv2.k8s.aws/pod-readiness-gate-inject absent"
    )
    assert _row(result, "k8s-readiness-gate").fix == (
        "set readiness_gate=true (the namespace label elbv2.k8s.aws/pod-readiness-gate-inject: enabled); in the "
        "manifests: readiness_gate at Namespace chat: label elbv2.k8s.aws/pod-readiness-gate-inject=enabled; "
        "k8s_target_type at Ingress chat-ws annotation alb.ingress.kubernetes.io/target-type"
    )


def test_readiness_gate_is_not_needed_for_instance_targets_but_stickiness_then_pins_a_node() -> None:
    """With target-type instance the missing gate is no hazard, but stickiness pins a node: k8s-target-type fails."""
    text = "alb.ingress.kubernetes.io/target-type: ip"
    result = _clean_with(text, "alb.ingress.kubernetes.io/target-type: instance")
    assert result.failed() == ["k8s-target-type"]
    assert _row(result, "k8s-target-type").fix == (
        "set k8s_target_type=ip; in the manifests: k8s_target_type at Ingress chat-ws annotation "
        "alb.ingress.kubernetes.io/target-type; stickiness_enabled at Ingress chat-ws annotation "
        "alb.ingress.kubernetes.io/target-group-attributes: stickiness.enabled"
    )


def test_pdb_allowing_every_pod_down_fails() -> None:
    """maxUnavailable 3 of 3 replicas fails k8s-pdb-keeps-pods."""
    result = _clean_with("maxUnavailable: 1\n", "maxUnavailable: 3\n")
    assert result.failed() == ["k8s-pdb-keeps-pods"]
    row = _row(result, "k8s-pdb-keeps-pods")
    assert row.found == (
        "pdb_max_unavailable=3 >= 3 (the fewest of replicas and min_replicas): a node drain may stop every pod at "
        "once, and every client reconnects to nothing"
    )
    assert row.fix == (
        "set pdb_max_unavailable below 3 (1 is usual), or raise replicas and min_replicas; in the manifests: "
        "pdb_max_unavailable at PodDisruptionBudget chat-ws: spec.maxUnavailable; replicas at Deployment chat-ws: "
        "spec.replicas; min_replicas at HorizontalPodAutoscaler chat-ws: spec.minReplicas"
    )


# -- the other fixtures, as public charts and tools write them ------------------------------------------


def test_plain_ingress_chart_fails_each_hazard_it_has() -> None:
    """A chart's plain ALB Ingress (target-type ip, nothing else) with no preStop, no PDB and no Namespace fails
    HTTP/2, stickiness, preStop, readiness gate and PDB; what it leaves out takes the documented defaults."""
    result = _audit("plain-ingress-chart.yaml")
    assert result.failed() == [
        "http2-off",
        "stickiness",
        "k8s-prestop-covers-propagation",
        "k8s-readiness-gate",
        "k8s-pdb-keeps-pods",
    ]
    assert _row(result, "k8s-prestop-covers-propagation").fix == (
        "set pre_stop_delay_s >= 10; in the manifests: pre_stop_delay_s at container realtime: lifecycle.preStop "
        "(add sleep: seconds: N)"
    )
    assert _row(result, "k8s-pdb-keeps-pods").found.startswith("pdb_max_unavailable=2 >= 2")
    defaults = {name: o.text for name, o in result.observed.items() if o.aws_default}
    assert defaults == {
        "idle_timeout_s": "60",
        "http2_enabled": "true",
        "client_keep_alive_s": "3600",
        "drop_invalid_header_fields": "false",
        "desync_mitigation_mode": "defensive",
        "deregistration_delay_s": "300",
        "stickiness_enabled": "false",
        "stickiness_type": "lb_cookie",
        "stickiness_duration_s": "86400",
        "health_check_interval_s": "15",
        "health_check_timeout_s": "5",
        "healthy_threshold_count": "2",
        "unhealthy_threshold_count": "2",
        "health_check_matcher": "200",
        "deregistration_propagation_s": "10",
        "termination_grace_period_s": "30",
        "max_surge_percent": "25",
        "max_unavailable_percent": "25",
    }
    where = {name: o.where for name, o in result.observed.items()}
    assert where["http2_enabled"] == (
        "Ingress realtime annotation alb.ingress.kubernetes.io/load-balancer-attributes routing.http2.enabled unset: "
        "AWS default"
    )
    assert where["health_check_interval_s"] == (
        "Ingress realtime annotation alb.ingress.kubernetes.io/healthcheck-interval-seconds unset: controller default"
    )
    assert where["termination_grace_period_s"] == (
        "Deployment realtime spec.template.spec.terminationGracePeriodSeconds unset: Kubernetes default"
    )
    assert where["pdb_max_unavailable"] == (
        "no PodDisruptionBudget selects the pods of Deployment realtime: a node drain may evict all 2"
    )


def test_gateway_api_idle_timeout_under_the_ping_interval() -> None:
    """Gateway API: the LoadBalancerConfiguration's 40 s idle timeout against your own server's 30 s pings fails
    ping-within-idle-timeout; the TargetGroupConfiguration's attributes, health check and target type are read."""
    result = _audit("gateway-api.yaml")
    assert result.failed() == ["ping-within-idle-timeout"]
    assert _row(result, "ping-within-idle-timeout").fix == (
        "set ping_interval_s <= 20 or idle_timeout_s >= 60; in the manifests: ping_interval_s at container presence "
        "env WS_PING_S; idle_timeout_s at LoadBalancerConfiguration presence-alb spec.loadBalancerAttributes: "
        "idle_timeout.timeout_seconds"
    )
    assert result.server_told == {
        "port": "PORT",
        "ping_interval_s": "WS_PING_S",
        "drain_window_s": "DRAIN_S",
        "shutdown_timeout_s": "STOP_S",
    }
    settings = result.settings
    assert (settings["k8s_api"], settings["k8s_target_type"], settings["deregistration_delay_s"]) == (
        "gateway",
        "ip",
        90,
    )
    assert (settings["health_check_interval_s"], settings["unhealthy_threshold_count"]) == (10, 3)
    assert (settings["pre_stop_delay_s"], settings["pdb_max_unavailable"]) == (15, 1)
    assert _row(result, "k8s-alb-controller").found == "GatewayClass aws-alb: controllerName gateway.k8s.aws/alb"


def test_kubectl_get_list_grace_period_and_pdb() -> None:
    """`kubectl get -o yaml` (a List with status fields): a 30 s grace period for 15 + 45 + 10 and a PDB of
    maxUnavailable 100% fail; the readiness gate is read from a pod's injected readinessGates."""
    result = _audit("kubectl-get-list.yaml")
    assert result.failed() == ["k8s-grace-covers-drain", "k8s-pdb-keeps-pods"]
    assert result.observed["pre_stop_delay_s"].where == "container notify preStop exec '/bin/sh -c sleep 15'"
    assert result.observed["pdb_max_unavailable"].where == "PodDisruptionBudget notify spec.maxUnavailable=100%"
    assert result.observed["readiness_gate"].where == (
        "pod notify-6c9f7d8b5d-x2k9q readinessGates target-health.elbv2.k8s.aws/..."
    )
    assert result.settings["max_surge_percent"] == 33  # maxSurge 1 of 3 replicas


# -- Kubernetes-only checks -----------------------------------------------------------------------------


def test_two_ingresses_with_different_attributes_fail_one_load_balancer() -> None:
    """A second Ingress to the same Service with other load balancer attributes fails k8s-one-load-balancer."""
    second = (
        "\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: chat-ws-internal\n"
        "  namespace: chat\n  annotations:\n    alb.ingress.kubernetes.io/scheme: internal\n"
        "spec:\n  ingressClassName: alb\n  defaultBackend:\n    service:\n      name: chat-ws\n"
        "      port:\n        number: 80\n"
    )
    text = CLEAN.read_text(encoding="utf-8") + second
    result = audit_objects(parse_manifests(text, "chart.yaml"), "manifests chart.yaml")
    assert result.failed() == ["k8s-one-load-balancer"]
    row = _row(result, "k8s-one-load-balancer")
    assert row.found.startswith("2 Ingresses reach the Service, separate load balancers: ")
    assert row.found.endswith("; the audit judged Ingress chat-ws")
    assert "chat-ws-internal: unset" in row.found


def test_ingress_class_of_another_controller_fails() -> None:
    """An IngressClass handled by another controller fails k8s-alb-controller: the annotations are ignored."""
    other = (
        "\n---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: alb\n"
        "spec:\n  controller: k8s.io/ingress-nginx\n"
    )
    text = CLEAN.read_text(encoding="utf-8") + other
    result = audit_objects(parse_manifests(text, "chart.yaml"), "manifests chart.yaml")
    assert result.failed() == ["k8s-alb-controller"]
    assert _row(result, "k8s-alb-controller").found == (
        "IngressClass alb has controller k8s.io/ingress-nginx: the alb.ingress.kubernetes.io annotations are ignored"
    )


def test_service_targeting_another_port_fails() -> None:
    """A Service whose targetPort is not the server's port fails k8s-service-targets-server."""
    result = _clean_with("targetPort: http", "targetPort: 9090")
    assert "k8s-service-targets-server" in result.failed()
    assert _row(result, "k8s-service-targets-server").found == (
        "Service chat-ws targets 9090; container chat listens on port=8080"
    )


def test_a_grace_period_the_server_is_not_told_fails_app_settings_match() -> None:
    """The reference server times its preStop drain by STICKYWS_TERMINATION_GRACE_PERIOD_S: a pod spec that says
    otherwise fails app-settings-match, naming both values."""
    result = _clean_with(
        'STICKYWS_TERMINATION_GRACE_PERIOD_S\n              value: "90"',
        'STICKYWS_TERMINATION_GRACE_PERIOD_S\n              value: "300"',
    )
    assert result.failed() == ["app-settings-match"]
    assert _row(result, "app-settings-match").found == (
        "termination_grace_period_s: manifests 90 (Deployment chat-ws spec.template.spec.terminationGracePeriodSeconds"
        "), container STICKYWS_TERMINATION_GRACE_PERIOD_S=300"
    )


def test_ecs_checks_are_skipped_with_the_reason() -> None:
    """The ECS checks and the listener-rule checks are skipped with a reason that says why, never passed."""
    result = audit_manifests([str(CLEAN)])
    skipped = {r.rule: r.found for r in result.results if r.status is Status.SKIP and r.kind == "deployment"}
    assert skipped["upgrade-rule"].startswith("the AWS Load Balancer Controller writes the listeners and rules")
    assert skipped["deployment-circuit-breaker"].startswith("an ECS check: a Kubernetes workload has no ECS service")
    assert _row(result, "stop-timeout-covers-shutdown").found == "the deployment has no ECS service"


# -- CLI: --assume, --json, stdin, errors -----------------------------------------------------------------


def test_assume_wins_over_the_manifests(capsys: pytest.CaptureFixture[str]) -> None:
    """--assume readiness_gate=true (a namespace labelled outside the files) clears that failure and is reported."""
    path = str(FIXTURES / "plain-ingress-chart.yaml")
    code, out, err = _run(["--k8s", path, "--assume", "readiness_gate=true"], capsys)
    assert (code, err) == (1, "")
    assert "fail  k8s-readiness-gate" not in out
    assert (
        " ".join(out.split()).count(
            "--assume readiness_gate=true overrides false from no Namespace with label "
            "elbv2.k8s.aws/pod-readiness-gate-inject=enabled in the manifests (add it to the files audited, or pass "
            "--assume readiness_gate=true)"
        )
        == 1
    )


def test_json_has_the_shape_of_every_other_source(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the same document as the template audit: source, exit code, parts, rows, settings, observed."""
    code, out, err = _run(["--k8s", str(FIXTURES / "kubectl-get-list.yaml"), "--json"], capsys)
    assert (code, err) == (1, "")
    data = json.loads(out)
    expected = to_json(_audit("kubectl-get-list.yaml"))
    assert data == json.loads(json.dumps(expected))
    assert set(data) == {
        "source",
        "exit_code",
        "summary",
        "parts",
        "server",
        "overrides",
        "results",
        "settings",
        "observed",
        "notes",
    }
    assert data["source"] == f"manifests {FIXTURES / 'kubectl-get-list.yaml'}"
    assert data["parts"] == ["kubernetes", "load_balancer", "server"]
    assert data["observed"]["termination_grace_period_s"] == {
        "value": "30",
        "where": "Deployment notify spec.template.spec.terminationGracePeriodSeconds",
        "aws_default": False,
    }


def test_stdin_is_read_with_a_dash(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`--k8s -` reads standard input, as `helm template ... | stickyws audit --k8s -` gives it."""
    monkeypatch.setattr("sys.stdin", io.StringIO(CLEAN.read_text(encoding="utf-8")))
    code, out, err = _run(["--k8s", "-"], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "stickyws audit of manifests standard input"


def test_several_files_are_one_deployment(tmp_path: Path) -> None:
    """Manifests split over files (kustomize output, one file per object) are read as one set."""
    documents = CLEAN.read_text(encoding="utf-8").split("\n---\n")
    paths = []
    for number, document in enumerate(documents):
        path = tmp_path / f"{number}.yaml"
        path.write_text(document, encoding="utf-8")
        paths.append(str(path))
    result = audit_manifests(paths)
    assert (result.failed(), result.exit_code) == ([], 0)


def test_a_file_that_is_not_yaml_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that is not YAML exits 2 with one line naming it, no traceback."""
    path = tmp_path / "broken.yaml"
    path.write_text("kind: Deployment\nmetadata: {name: [unclosed\n", encoding="utf-8")
    code, out, err = _run(["--k8s", str(path)], capsys)
    assert (code, out) == (2, "")
    assert err.splitlines() == [err.strip()]
    assert err.startswith(f"stickyws: {path} is not YAML: ")
    assert "Traceback" not in err


def test_an_unrendered_chart_template_says_to_render_it(tmp_path: Path) -> None:
    """A chart's template file (Helm syntax, not YAML) is refused with the hint to run helm template."""
    path = tmp_path / "deployment.yaml"
    path.write_text("kind: Deployment\nspec:\n  replicas: {{ .Values.replicaCount }}\n", encoding="utf-8")
    with pytest.raises(ManifestError) as raised:
        audit_manifests([str(path)])
    assert str(raised.value).startswith(f"{path} is not YAML: ")
    assert str(raised.value).endswith("; it holds Helm template syntax: render it first (helm template)")


def test_a_missing_or_binary_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file and a file that is not text exit 2 with one line each."""
    missing = tmp_path / "nope.yaml"
    code, _, err = _run(["--k8s", str(missing)], capsys)
    assert (code, err) == (2, f"stickyws: cannot read {missing}: No such file or directory\n")
    binary = tmp_path / "image.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    code, _, err = _run(["--k8s", str(binary)], capsys)
    assert (code, err) == (2, f"stickyws: {binary} is not text; pass YAML manifests\n")


def test_yaml_without_a_workload_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Manifests without a Deployment or StatefulSet exit 2 with one line that says what to pass."""
    path = tmp_path / "ingress-only.yaml"
    path.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: chat\n", encoding="utf-8")
    code, out, err = _run(["--k8s", str(path)], capsys)
    assert (code, out) == (2, "")
    assert err == (
        f"stickyws: manifests {path} holds no workload (Deployment or StatefulSet), only Service; pass the "
        "manifests of the WebSocket server's workload too\n"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("just some words\n", "document 1 is a str, not a Kubernetes object"),
        ("- a\n- b\n", "document 1 is a list, not a Kubernetes object"),
        ("", "no Kubernetes object in"),
    ],
)
def test_text_that_is_no_manifest_is_refused(tmp_path: Path, text: str, message: str) -> None:
    """YAML that holds no Kubernetes object raises ManifestError saying so."""
    path = tmp_path / "x.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError, match=message):
        audit_manifests([str(path)])


def test_k8s_goes_alone(capsys: pytest.CaptureFixture[str]) -> None:
    """--k8s with another source, or with a live-only option, exits 2 with the reason."""
    code, _, err = _run(["--k8s", str(CLEAN), "--stack-name", "X"], capsys)
    assert code == 2
    assert err.startswith("stickyws: pass exactly one source: ")
    code, _, err = _run(["--k8s", str(CLEAN), "--region", "eu-west-1"], capsys)
    assert (code, err) == (2, "stickyws: --region/--profile/--registry-id apply to live sources, not to --k8s\n")


# -- docs -------------------------------------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


def test_docs_show_the_report_of_the_kubectl_list(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/audit.md shows this very report of kubectl-get-list.yaml: header and failures (the counts below
    them follow the number of rules, so the docs leave them out)."""
    monkeypatch.chdir(FIXTURES)
    code, out, _ = _run(["--k8s", "kubectl-get-list.yaml"], capsys)
    assert code == 1
    lines = out.splitlines()
    shown = "\n".join(lines[: lines.index("", 4)])  # the header, a blank line, the failures up to the next blank
    assert f"$ stickyws audit --k8s kubectl-get-list.yaml\n{shown}\n```" in DOC.read_text(encoding="utf-8")
    assert max(len(line) for line in lines) <= 110


def test_docs_name_every_kubernetes_check() -> None:
    """Each deployment check only manifests raise is one the docs describe, under its id."""
    result = audit_manifests([str(CLEAN)])
    ids = [r.rule for r in result.results if r.kind == "deployment" and r.rule.startswith("k8s-")]
    assert ids == list(KUBERNETES_CHECK_IDS)
    text = DOC.read_text(encoding="utf-8")
    assert [i for i in ids if f"- `{i}`: " not in text] == []


def test_a_statefulset_rolls_one_pod_at_a_time_without_surge() -> None:
    """A StatefulSet is read like a Deployment; its rollout stops one pod before starting its replacement, which
    k8s-rollout warns about (1 of 3 pods is 34 %)."""
    result = _clean_with(
        "kind: Deployment\nmetadata:\n  name: chat-ws", "kind: StatefulSet\nmetadata:\n  name: chat-ws"
    )
    assert result.failed() == []
    assert (result.settings["max_surge_percent"], result.settings["max_unavailable_percent"]) == (0, 34)
    assert _row(result, "k8s-rollout").status is Status.WARN
    assert result.observed["max_unavailable_percent"].where == (
        "StatefulSet chat-ws updateStrategy (one pod at a time, no surge)"
    )


@pytest.mark.parametrize(
    "render_args",
    [
        ["--api", "ingress"],
        ["--api", "gateway"],
        [
            "-c",
            "server_mode=own",
            "-c",
            "server_env=port=PORT,ping_interval_s=WS_PING_S,drain_window_s,shutdown_timeout_s",
            "--image",
            "example/own:1",
        ],
    ],
    ids=["ingress", "gateway", "own-server"],
)
def test_what_stickyws_k8s_render_prints_passes_the_audit(
    render_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The manifests `stickyws k8s render` prints from the default settings pass their own audit: one model,
    rendered to YAML and read back."""
    assert main(["k8s", "render", *render_args]) == 0
    rendered = capsys.readouterr().out
    result = audit_objects(parse_manifests(rendered, "rendered.yaml"), "manifests rendered.yaml")
    assert result.failed() == []
    assert {Scope.KUBERNETES, Scope.LOAD_BALANCER, Scope.SERVER} <= result.parts
    assert result.settings["k8s_api"] == ("gateway" if "gateway" in render_args else "ingress")
