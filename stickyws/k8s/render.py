"""Render the settings into Kubernetes manifests: check the rules of a Kubernetes deployment, then build.

:func:`render` judges the settings for the parts a Kubernetes deployment has (:data:`K8S_PARTS`: the load
balancer, the Kubernetes workload, the server; never the ECS service's rules) and raises
:class:`~stickyws.settings.SettingsError` on an error, then returns the objects in apply order:
Namespace, Deployment, Service, PodDisruptionBudget, HorizontalPodAutoscaler, then the ALB's objects of
``k8s_api`` (an Ingress, or GatewayClass, LoadBalancerConfiguration, Gateway, TargetGroupConfiguration and
HTTPRoute). :func:`render_yaml` prints them as multi-document YAML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stickyws.k8s.app import WebSocketApp
from stickyws.k8s.gateway import objects as gateway_objects
from stickyws.k8s.ingress import objects as ingress_objects
from stickyws.k8s.workload import autoscaler, deployment, namespace, pod_disruption_budget, service
from stickyws.k8s.yaml_io import dump_documents
from stickyws.settings import Finding, Severity
from stickyws.settings.rules.kubernetes import DNS_LABEL
from stickyws.settings.scopes import K8S_PARTS


@dataclass(frozen=True)
class Rendered:
    """The manifests of one app, in apply order, and the rules' warnings and notes about its settings."""

    documents: tuple[dict[str, Any], ...]
    findings: tuple[Finding, ...]

    def warnings(self) -> list[Finding]:
        """The findings of severity warning."""
        return [f for f in self.findings if f.severity is Severity.WARNING]

    def yaml(self) -> str:
        """The documents as multi-document YAML."""
        return dump_documents(self.documents)


def render(app: WebSocketApp) -> Rendered:
    """The manifests of ``app``; raises :class:`~stickyws.settings.SettingsError` when a rule reports an error.

    Raises :class:`ValueError` when ``app.name`` is not a DNS label.
    """
    if not DNS_LABEL.fullmatch(app.name):
        raise ValueError(f"name {app.name!r} is not a DNS label: use lower-case letters, digits and '-'")
    findings = app.settings.check(K8S_PARTS)
    exposure = gateway_objects(app) if app.settings.kubernetes.k8s_api == "gateway" else ingress_objects(app)
    documents = (namespace(app), deployment(app), service(app), pod_disruption_budget(app), autoscaler(app), *exposure)
    return Rendered(documents, tuple(findings))


def render_yaml(app: WebSocketApp) -> str:
    """:func:`render` as multi-document YAML."""
    return render(app).yaml()
