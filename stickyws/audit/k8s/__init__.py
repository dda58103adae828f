"""``stickyws audit --k8s``: judge Kubernetes manifests with the settings model's rules.

Pipeline (pure, no cluster access)::

    manifests.load_manifests(paths) -> objects.find_deployment() -> mapping.read_settings()
        -> runner.audit_objects(): stickyws.audit.checks.audit() with the Kubernetes parts,
           observations and checks (checks.kubernetes_checks())

Modules: ``manifests`` (multi-document YAML, ``kind: List``, standard input), ``objects`` (which
workload, Service, Ingress or Gateway API objects, PodDisruptionBudget, HPA and Namespace belong to
the WebSocket deployment), ``mapping`` (the settings they decide, with the controller's, AWS's and
Kubernetes' defaults, and where each setting is written), ``checks`` (the deployment checks as they
apply to manifests, and those only manifests raise), ``runner`` (the audit).
"""

from stickyws.audit.k8s.manifests import Manifest, ManifestError, load_manifests, parse_manifests
from stickyws.audit.k8s.objects import KubernetesDeployment, find_deployment
from stickyws.audit.k8s.runner import audit_manifests, audit_objects, describe_source

__all__ = [
    "KubernetesDeployment",
    "Manifest",
    "ManifestError",
    "audit_manifests",
    "audit_objects",
    "describe_source",
    "find_deployment",
    "load_manifests",
    "parse_manifests",
]
