"""Put the Kubernetes manifests of a sticky WebSocket service on an EKS cluster.

:func:`add_websocket_manifests` renders the settings with :mod:`stickyws.k8s` (the same objects
``stickyws k8s render`` prints) and adds them to an ``aws_eks.Cluster`` (or an ``aws_eks_v2.Cluster``) with
``cluster.add_manifest``: the workload (Namespace, Deployment, Service, PodDisruptionBudget,
HorizontalPodAutoscaler) as one manifest, the ALB's objects (an Ingress, or the Gateway API objects) as a
second one that waits for the cluster's AWS Load Balancer Controller when the cluster installs it
(``alb_controller=``). The settings are judged first for a Kubernetes deployment
(:data:`stickyws.k8s.K8S_PARTS`) with :func:`constructs_lib.settings_check.apply_settings`: an error stops
the synth with the fix, warnings become annotations.

Offline: synthesis needs no AWS credentials and no Docker. ``aws_eks.Cluster`` needs a ``kubectl_layer``:
for a deployment, the layer package of the cluster's Kubernetes version from PyPI (e.g.
``aws-cdk.lambda-layer-kubectl-v33``: ``KubectlV33Layer(self, "Kubectl")``), which ships the layer as a
file and is staged as an asset at synth; a test may pass any ``LayerVersion.from_layer_version_arn``.
The Gateway API objects need the Gateway API CRDs and the controller's ``gateway.k8s.aws`` CRDs on the
cluster (the controller's Helm chart v3 installs the latter); ``add_manifest`` applies them with kubectl at
deploy time, so nothing checks them at synth.
"""

from __future__ import annotations

from typing import Any, Protocol

from constructs import IConstruct

from constructs_lib.settings_check import apply_settings
from stickyws.k8s import DEFAULT_IMAGE, K8S_PARTS, WebSocketApp, render
from stickyws.settings import Settings

#: Kinds of the workload manifest; the rest of the rendering is the ALB's manifest.
WORKLOAD_KINDS = frozenset({"Namespace", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"})


class _ClusterWithManifests(IConstruct, Protocol):
    def add_manifest(self, id: str, *manifest: Any) -> Any: ...


def add_websocket_manifests(
    cluster: _ClusterWithManifests,
    settings: Settings,
    *,
    image: str | None = None,
    name: str = "stickyws",
    certificate_arn: str | None = None,
    internet_facing: bool = True,
) -> tuple[Any, Any]:
    """Add the service's manifests to ``cluster``; returns ``(workload manifest, ALB manifest)``.

    :param cluster: an ``aws_eks.Cluster`` or ``aws_eks_v2.Cluster`` (anything with ``add_manifest``).
    :param settings: the deployment's settings; judged for the load balancer, the Kubernetes workload and the
        server (errors raise :class:`stickyws.settings.SettingsError`).
    :param image: container image; required with ``server_mode=own`` (your server's image). Default: the
        reference server's image name, :data:`stickyws.k8s.DEFAULT_IMAGE`.
    :param name: name of the Deployment, Service and the rest, and prefix of the manifests' construct ids.
    :param certificate_arn: ACM certificate of an HTTPS listener on 443; default one HTTP listener on 80.
    :param internet_facing: an internet-facing ALB (default) or an internal one.
    """
    if settings.own_server and image is None:
        raise ValueError("server_mode=own needs image=: the image of your server")
    apply_settings(cluster, settings, K8S_PARTS)
    app = WebSocketApp(
        settings,
        image=image or DEFAULT_IMAGE,
        name=name,
        certificate_arn=certificate_arn,
        internet_facing=internet_facing,
    )
    documents = render(app).documents
    workload = cluster.add_manifest(f"{name}-workload", *[d for d in documents if d["kind"] in WORKLOAD_KINDS])
    load_balancer = cluster.add_manifest(
        f"{name}-load-balancer", *[d for d in documents if d["kind"] not in WORKLOAD_KINDS]
    )
    load_balancer.node.add_dependency(workload)  # the namespace and the Service first
    controller = getattr(cluster, "alb_controller", None)
    if controller is not None:  # the controller's webhooks and CRDs before the objects it serves
        load_balancer.node.add_dependency(controller)
    return workload, load_balancer
