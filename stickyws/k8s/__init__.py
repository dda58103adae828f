"""Kubernetes manifests for EKS and the AWS Load Balancer Controller, rendered from the one settings model.

>>> from stickyws.k8s import WebSocketApp, render
>>> from stickyws.settings import Settings
>>> [d["kind"] for d in render(WebSocketApp(Settings())).documents]
['Namespace', 'Deployment', 'Service', 'PodDisruptionBudget', 'HorizontalPodAutoscaler', 'Ingress']

Modules: ``app`` (what one rendering is about: settings, image, names), ``alb`` (the ALB's attributes from
the settings), ``workload`` (Namespace, Deployment, Service, PodDisruptionBudget,
HorizontalPodAutoscaler), ``ingress`` and ``gateway`` (the two ways to ask the controller for the ALB),
``render`` (judge, then build), ``yaml_io`` (the one module that touches a YAML library), ``cli``
(``stickyws k8s render``). The CDK path, ``constructs_lib.eks.add_websocket_manifests``, puts the very
same objects on an ``aws_eks.Cluster``.

Why plain Python data and PyYAML, not cdk8s. Every object is a dict built by a small function; PyYAML
prints it. cdk8s (Python) was measured here against the same ten objects (Gateway API path), on this
project's machines (Python 3.11, Node 20):

* cdk8s runs on jsii, which starts a Node process: ``import cdk8s`` fails with ``FileNotFoundError:
  'node'`` where Node is not installed. ``stickyws k8s render`` is for Helm and kustomize users, who have
  Python and kubectl, not Node; with plain data they need only PyYAML (``stickyws[k8s]``).
* Time: a whole ``python -m stickyws k8s render`` process takes 0.18-0.19 s, a further render with its
  YAML 13 ms in-process. With cdk8s the import alone takes 0.3-0.5 s (0.5 s with cdk8s-plus-33), a
  process that synthesizes the same objects 0.6-0.8 s, each further synth 25-30 ms in-process.
* Footprint: cdk8s 2.70.115 with cdk8s-plus-33 2.5.63, jsii and constructs add about 24 MB to a venv (13 MB
  of it cdk8s-plus-33) plus a Node runtime (about 100 MB); PyYAML is about 3 MB and already installed with
  the CDK tooling.
* What cdk8s would add does not apply here: cdk8s-plus has no types for the controller's
  ``gateway.k8s.aws`` resources nor for the Gateway API, whose objects would be raw ``ApiObject`` with a
  JSON patch for ``spec`` (``ApiObject`` takes no ``spec=``) or imported, generated classes; and the CDK
  path does not need it either: ``aws_eks.Cluster.add_manifest`` takes plain dicts.
The schemas are checked by tests instead (``tests/k8s``: kubernetes-validate for the built-in kinds, the
controller's and the Gateway API's CRD schemas, pinned, for the rest).
"""

from stickyws.k8s.app import DEFAULT_GATEWAY_CLASS, DEFAULT_IMAGE, WebSocketApp
from stickyws.k8s.render import Rendered, render, render_yaml
from stickyws.settings.scopes import K8S_PARTS

__all__ = [
    "DEFAULT_GATEWAY_CLASS",
    "DEFAULT_IMAGE",
    "K8S_PARTS",
    "Rendered",
    "WebSocketApp",
    "render",
    "render_yaml",
]
