"""The manifests carry every setting they render, from one settings object, and refuse settings that must not
be deployed on Kubernetes."""

from __future__ import annotations

from typing import Any

import pytest

from stickyws.k8s import WebSocketApp, render, workload
from stickyws.settings import Settings, SettingsError, server_environment
from tests.k8s.conftest import OWN, documents

#: Non-default values of everything the manifests carry.
CHANGED = {
    "idle_timeout_s": 300,
    "deregistration_delay_s": 120,
    "stickiness_duration_s": 3600,
    "health_check_path": "/ready",
    "health_check_interval_s": 10,
    "health_check_timeout_s": 4,
    "healthy_threshold_count": 3,
    "unhealthy_threshold_count": 4,
    "health_check_matcher": "200-299",
    "k8s_namespace": "chat",
    "replicas": 3,
    "min_replicas": 3,
    "max_replicas": 7,
    "termination_grace_period_s": 150,
    "pre_stop_delay_s": 20,
    "drain_window_s": 90,
    "pdb_max_unavailable": 2,
    "max_surge_percent": 50,
    "target_cpu_percent": 45,
}
LB_ATTRIBUTES = (
    "idle_timeout.timeout_seconds=300,routing.http2.enabled=false,client_keep_alive.seconds=3600,"
    "routing.http.drop_invalid_header_fields.enabled=true,routing.http.desync_mitigation_mode=defensive"
)
TG_ATTRIBUTES = (
    "deregistration_delay.timeout_seconds=120,stickiness.enabled=true,stickiness.type=lb_cookie,"
    "stickiness.lb_cookie.duration_seconds=3600"
)


def _container(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_ingress_annotations_carry_the_load_balancer_settings() -> None:
    """The Ingress's controller annotations hold the ALB and target group attributes, health check and target type."""
    ingress = documents("ingress", CHANGED)["Ingress"]
    a = {k.removeprefix("alb.ingress.kubernetes.io/"): v for k, v in ingress["metadata"]["annotations"].items()}
    assert a["load-balancer-attributes"] == LB_ATTRIBUTES
    assert a["target-group-attributes"] == TG_ATTRIBUTES
    assert (a["target-type"], a["scheme"], a["listen-ports"]) == ("ip", "internet-facing", '[{"HTTP": 80}]')
    assert [a[k] for k in ("healthcheck-path", "healthcheck-interval-seconds", "healthcheck-timeout-seconds")] == [
        "/ready",
        "10",
        "4",
    ]
    assert [a[k] for k in ("healthy-threshold-count", "unhealthy-threshold-count", "success-codes")] == [
        "3",
        "4",
        "200-299",
    ]
    assert ingress["spec"]["ingressClassName"] == "alb"
    assert ingress["metadata"]["namespace"] == "chat"


def test_gateway_configurations_carry_the_same_attributes() -> None:
    """LoadBalancerConfiguration and TargetGroupConfiguration hold the very pairs the Ingress annotations hold."""
    docs = documents("gateway", CHANGED)
    lbc, tgc = docs["LoadBalancerConfiguration"]["spec"], docs["TargetGroupConfiguration"]["spec"]
    assert ",".join(f"{p['key']}={p['value']}" for p in lbc["loadBalancerAttributes"]) == LB_ATTRIBUTES
    config = tgc["defaultConfiguration"]
    assert ",".join(f"{p['key']}={p['value']}" for p in config["targetGroupAttributes"]) == TG_ATTRIBUTES
    assert config["healthCheckConfig"] == {
        "healthCheckProtocol": "HTTP",
        "healthCheckPath": "/ready",
        "healthCheckInterval": 10,
        "healthCheckTimeout": 4,
        "healthyThresholdCount": 3,
        "unhealthyThresholdCount": 4,
        "matcher": {"httpCode": "200-299"},
    }
    assert (config["targetType"], config["protocolVersion"]) == ("ip", "HTTP1")
    # The objects name each other.
    assert (
        docs["Gateway"]["spec"]["infrastructure"]["parametersRef"]["name"]
        == docs["LoadBalancerConfiguration"]["metadata"]["name"]
    )
    assert tgc["targetReference"] == {"kind": "Service", "name": docs["Service"]["metadata"]["name"]}
    assert docs["HTTPRoute"]["spec"]["rules"][0]["backendRefs"] == [{"name": "stickyws", "port": 8080}]
    assert docs["Gateway"]["spec"]["gatewayClassName"] == docs["GatewayClass"]["metadata"]["name"] == "aws-alb"
    assert docs["GatewayClass"]["spec"]["controllerName"] == "gateway.k8s.aws/alb"


def test_https_listener_with_a_certificate() -> None:
    """A certificate gives one HTTPS listener on 443 with the recommended TLS policy, on both paths."""
    arn = "arn:aws:acm:eu-west-1:111122223333:certificate/abcd"
    a = documents("ingress", certificate_arn=arn)["Ingress"]["metadata"]["annotations"]
    assert (a["alb.ingress.kubernetes.io/listen-ports"], a["alb.ingress.kubernetes.io/certificate-arn"]) == (
        '[{"HTTPS": 443}]',
        arn,
    )
    docs = documents("gateway", certificate_arn=arn)
    assert docs["Gateway"]["spec"]["listeners"][0]["protocol"] == "HTTPS"
    assert docs["LoadBalancerConfiguration"]["spec"]["listenerConfigurations"] == [
        {"protocolPort": "HTTPS:443", "defaultCertificate": arn, "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06"}
    ]
    assert docs["HTTPRoute"]["spec"]["parentRefs"][0]["sectionName"] == "https"


def test_deployment_carries_the_stop_sequence_and_rollout() -> None:
    """Grace period, drain-self preStop, surge/unavailable and replicas come from the settings."""
    docs = documents("ingress", CHANGED)
    spec = docs["Deployment"]["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": "50%", "maxUnavailable": "0%"}
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 150
    container = _container(docs)
    assert container["lifecycle"] == {"preStop": {"exec": {"command": ["stickyws", "server", "drain-self"]}}}
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/ready", "port": "ws"},
        "periodSeconds": 10,
        "timeoutSeconds": 4,
        "successThreshold": 1,
        "failureThreshold": 4,
    }
    assert container["livenessProbe"]["tcpSocket"] == {"port": "ws"}
    assert docs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 2
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 7)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 45


def test_reference_server_is_told_every_setting_and_its_secrets() -> None:
    """The reference server's env is every STICKYWS_* setting (pre_stop_delay_s included) and three secret refs."""
    settings = Settings().with_overrides(CHANGED)
    env = _container(documents("ingress", CHANGED))["env"]
    plain = {e["name"]: e["value"] for e in env if "value" in e}
    assert plain == server_environment(settings)
    assert plain["STICKYWS_PRE_STOP_DELAY_S"] == "20"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert refs == {
        "STICKYWS_JWT_SECRET": {"name": "stickyws-secrets", "key": "jwt-secret"},
        "REDIS_URL": {"name": "stickyws-secrets", "key": "redis-url"},
        "STICKYWS_PUBLISH_KEY": {"name": "stickyws-secrets", "key": "publish-key", "optional": True},
    }


def test_own_server_sleeps_in_prestop_and_is_told_only_its_settings() -> None:
    """Your own image gets a preStop sleep of pre_stop_delay_s, only the server_env variables, and no secrets."""
    docs = documents("ingress", {**OWN, "pre_stop_delay_s": 25, "deregistration_delay_s": 90}, image="me/chat:7")
    container = _container(docs)
    assert container["image"] == "me/chat:7"
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 25}}}
    assert container["env"] == [
        {"name": "PORT", "value": "3000"},
        {"name": "DRAIN_S", "value": "45"},
        {"name": "STICKYWS_SHUTDOWN_TIMEOUT_S", "value": "10"},
    ]
    assert container["ports"] == [{"name": "ws", "containerPort": 3000, "protocol": "TCP"}]
    annotations = docs["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"stickyws.server-mode": "own", "stickyws.server-env": OWN["server_env"]}
    no_wait = _container(documents("ingress", {**OWN, "pre_stop_delay_s": 0, "deregistration_propagation_s": 0}))
    assert "lifecycle" not in no_wait


def test_readiness_gate_label_follows_the_setting() -> None:
    """The namespace carries the controller's readiness-gate label exactly when readiness_gate is on; off, with ip
    targets, the rules refuse to render."""
    on = documents("ingress")["Namespace"]["metadata"]["labels"]
    assert on["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"
    off = Settings().with_overrides({"readiness_gate": False})
    assert "elbv2.k8s.aws/pod-readiness-gate-inject" not in workload.namespace(WebSocketApp(off))["metadata"]["labels"]
    with pytest.raises(SettingsError, match=r"\[k8s-readiness-gate\].*-> set readiness_gate=true"):
        render(WebSocketApp(off))


def test_instance_targets_get_a_node_port_and_are_refused_with_stickiness() -> None:
    """Instance targets need a NodePort Service, and the rules refuse them for a sticky service."""
    instance = Settings().with_overrides({"k8s_target_type": "instance"})
    assert workload.service(WebSocketApp(instance))["spec"]["type"] == "NodePort"
    with pytest.raises(SettingsError, match=r"\[k8s-target-type\].*-> set k8s_target_type=ip"):
        render(WebSocketApp(instance))


def test_settings_errors_stop_rendering() -> None:
    """A grace period shorter than preStop + drain + shutdown is refused with the fix; nothing is rendered."""
    settings = Settings().with_overrides({"termination_grace_period_s": 60})
    with pytest.raises(SettingsError, match=r"k8s-grace-covers-drain.*set termination_grace_period_s >= 70"):
        render(WebSocketApp(settings))


def test_ecs_only_rules_do_not_apply() -> None:
    """A shutdown longer than the ECS stop timeout, refused on ECS, renders on Kubernetes (no stop timeout there)."""
    settings = Settings().with_overrides(
        {"shutdown_timeout_s": 60, "stop_timeout_s": 30, "termination_grace_period_s": 120}
    )
    assert [f.rule for f in settings.validate() if f.severity.value == "error"] == ["stop-timeout-covers-shutdown"]
    rendered = render(WebSocketApp(settings))
    assert rendered.documents[1]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 120


def test_ingress_attributes_equal_the_ecs_stack_attributes() -> None:
    """The load balancer attributes on EKS are exactly those the CDK construct sets on ECS, for the same settings."""
    from constructs_lib import load_balancer_attributes

    settings = Settings().with_overrides(CHANGED)
    ecs = ",".join(f"{k}={v}" for k, v in load_balancer_attributes(settings).items())
    annotations = documents("ingress", CHANGED)["Ingress"]["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/load-balancer-attributes"] == ecs


def test_a_name_that_is_not_a_dns_label_is_refused() -> None:
    """An object name Kubernetes would refuse is refused before anything is built."""
    with pytest.raises(ValueError, match="'Chat_App' is not a DNS label"):
        render(WebSocketApp(Settings(), name="Chat_App"))
