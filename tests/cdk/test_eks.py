"""add_websocket_manifests puts the rendered manifests on an aws_eks.Cluster, judged first, and synthesizes offline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stickyws.k8s import WebSocketApp, render
from stickyws.settings import Settings, SettingsError
from tests.cdk_reference import new_app

#: A layer ARN instead of a kubectl layer package: synthesis only names the layer (see constructs_lib/eks.py).
KUBECTL_LAYER_ARN = "arn:aws:lambda:eu-west-1:111122223333:layer:kubectl:1"
#: Prefix of the label aws_eks adds to every object of a manifest (for kubectl's prune).
PRUNE_LABEL = "aws.cdk.eks/prune-"
GATEWAY = Settings().with_overrides({"k8s_api": "gateway", "idle_timeout_s": 300})
OWN = Settings().with_overrides(
    {
        "server_mode": "own",
        "server_env": "port=PORT",
        "port": 3000,
        "k8s_namespace": "chat",
        "max_unavailable_percent": 25,
    }
)


@dataclass(frozen=True)
class EksSynth:
    template: dict[str, Any]
    warnings: list[str]


def _cluster(stack: Any, construct_id: str, **props: Any) -> Any:
    from aws_cdk import aws_eks as eks
    from aws_cdk import aws_lambda as lambda_

    layer = lambda_.LayerVersion.from_layer_version_arn(stack, f"{construct_id}Kubectl", KUBECTL_LAYER_ARN)
    return eks.Cluster(
        stack, construct_id, version=eks.KubernetesVersion.V1_33, kubectl_layer=layer, default_capacity=0, **props
    )


@pytest.fixture(scope="module")
def eks_synth(tmp_path_factory: pytest.TempPathFactory) -> EksSynth:
    """One synth: a cluster with the controller (v3.2.2), the reference server on the Gateway API, and your own
    server on an Ingress."""
    from aws_cdk import Stack
    from aws_cdk import aws_eks as eks

    from constructs_lib.eks import add_websocket_manifests

    app = new_app(tmp_path_factory.mktemp("eks"))
    stack = Stack(app, "EksWebSocket")
    controller = eks.AlbControllerOptions(version=eks.AlbControllerVersion.V3_2_2)
    cluster = _cluster(stack, "Cluster", alb_controller=controller)
    add_websocket_manifests(cluster, GATEWAY)
    add_websocket_manifests(cluster, OWN, image="me/chat:7", name="chat")
    assembly = app.synth()
    artifact = assembly.get_stack_by_name("EksWebSocket")
    warnings = [str(m.data) for m in cluster.node.metadata if m.type == "aws:cdk:warning"]
    assert Path(assembly.directory, artifact.template_file).is_file()
    return EksSynth(artifact.template, warnings)


def _manifests(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{logical id: resource}`` of every Kubernetes manifest custom resource."""
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "Custom::AWSCDK-EKS-KubernetesResource"}


def _one(template: dict[str, Any], fragment: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(k, v) for k, v in _manifests(template).items() if fragment in k]
    return found


def test_manifests_are_the_rendered_documents(eks_synth: EksSynth) -> None:
    """The two manifests of an app hold exactly the documents render() returns, workload first."""
    expected = render(WebSocketApp(GATEWAY)).documents
    _, workload = _one(eks_synth.template, "manifeststickywsworkload")
    _, load_balancer = _one(eks_synth.template, "manifeststickywsloadbalancer")
    docs = json.loads(workload["Properties"]["Manifest"]) + json.loads(load_balancer["Properties"]["Manifest"])
    # add_manifest labels every object for kubectl's prune; nothing else differs.
    for doc in docs:
        labels = doc["metadata"]["labels"]
        (prune,) = [key for key in labels if key.startswith(PRUNE_LABEL)]
        assert labels.pop(prune) == ""
    assert docs == list(expected)
    assert [d["kind"] for d in json.loads(load_balancer["Properties"]["Manifest"])] == [
        "GatewayClass",
        "LoadBalancerConfiguration",
        "Gateway",
        "TargetGroupConfiguration",
        "HTTPRoute",
    ]


def test_own_server_manifests_carry_its_image_and_ingress(eks_synth: EksSynth) -> None:
    """Your own server's Deployment runs its image in its namespace, behind an Ingress."""
    _, workload = _one(eks_synth.template, "manifestchatworkload")
    deployment = next(d for d in json.loads(workload["Properties"]["Manifest"]) if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert (deployment["metadata"]["namespace"], container["image"]) == ("chat", "me/chat:7")
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 15}}}
    _, load_balancer = _one(eks_synth.template, "manifestchatloadbalancer")
    assert [d["kind"] for d in json.loads(load_balancer["Properties"]["Manifest"])] == ["Ingress"]


def test_load_balancer_objects_wait_for_the_controller_and_the_workload(eks_synth: EksSynth) -> None:
    """The ALB's manifest depends on the cluster's controller chart and on the app's workload manifest."""
    workload_id, _ = _one(eks_synth.template, "manifeststickywsworkload")
    _, load_balancer = _one(eks_synth.template, "manifeststickywsloadbalancer")
    depends = load_balancer["DependsOn"]
    assert workload_id in depends
    assert any("AlbController" in d for d in depends), depends


def test_warnings_become_annotations(eks_synth: EksSynth) -> None:
    """A rule's warning (a rollout that may stop pods first) is an annotation on the cluster, with its id."""
    (warning,) = [w for w in eks_synth.warnings if "k8s-rollout" in w]
    assert "max_unavailable_percent=25" in warning
    assert "[ack: stickyws:settings:k8s-rollout]" in warning


def test_settings_errors_and_a_missing_image_stop_before_any_manifest(tmp_path: Path) -> None:
    """A grace period too short for the drain raises SettingsError with the fix; your own server needs its image."""
    from aws_cdk import Stack

    from constructs_lib.eks import add_websocket_manifests

    stack = Stack(new_app(tmp_path), "Refused")
    cluster = _cluster(stack, "Cluster")
    with pytest.raises(SettingsError, match=r"k8s-grace-covers-drain.*set termination_grace_period_s >= 70"):
        add_websocket_manifests(cluster, Settings().with_overrides({"termination_grace_period_s": 30}))
    with pytest.raises(ValueError, match="server_mode=own needs image="):
        add_websocket_manifests(cluster, Settings().with_overrides({"server_mode": "own"}))
    assert [c.node.id for c in cluster.node.find_all() if c.node.id.startswith("manifest-")] == []
