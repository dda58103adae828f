"""What one rendering is about: the settings, the image, the names, and the choices that are not settings.

Every object is named after :attr:`WebSocketApp.name` and lives in the settings' ``k8s_namespace``;
its pods carry :meth:`WebSocketApp.selector` as labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stickyws import __version__
from stickyws.settings import Settings

#: The image of the reference server when none is given: build it from the repository's Dockerfile and
#: push it under this name, or pass your registry's name.
DEFAULT_IMAGE = f"stickyws:{__version__}"
#: The GatewayClass of the controller's ALB gateways (``controllerName: gateway.k8s.aws/alb``).
DEFAULT_GATEWAY_CLASS = "aws-alb"
#: The IngressClass the controller's Helm chart installs.
INGRESS_CLASS = "alb"
#: Name of the WebSocket port on the container and the Service.
PORT_NAME = "ws"


@dataclass(frozen=True)
class WebSocketApp:
    """One WebSocket service on Kubernetes.

    :param settings: the deployment's settings (every value rendered comes from them).
    :param image: container image; for your own server (``server_mode=own``) your image.
    :param name: name of the Deployment, Service, Ingress or Gateway and the rest (a DNS label).
    :param certificate_arn: ACM certificate of an HTTPS listener on 443; ``None``: one HTTP listener on 80.
    :param internet_facing: an internet-facing ALB (default) or an internal one.
    :param gateway_class: GatewayClass the Gateway names (Gateway API only); it is rendered too.
    :param secret_name: Secret with the reference server's ``jwt-secret`` and ``redis-url`` (and optional
        ``publish-key``); default ``<name>-secrets``.
    """

    settings: Settings
    image: str = DEFAULT_IMAGE
    name: str = "stickyws"
    certificate_arn: str | None = None
    internet_facing: bool = True
    gateway_class: str = DEFAULT_GATEWAY_CLASS
    secret_name: str | None = None

    @property
    def namespace(self) -> str:
        """The namespace of every object (``k8s_namespace``)."""
        return str(self.settings.kubernetes.k8s_namespace)

    @property
    def port(self) -> int:
        """The WebSocket port of the container and the Service (``port``)."""
        return int(self.settings.server.port)

    @property
    def secrets(self) -> str:
        """Name of the Secret the reference server reads its keys and registry URL from."""
        return self.secret_name or f"{self.name}-secrets"

    def selector(self) -> dict[str, str]:
        """The labels that select the pods."""
        return {"app.kubernetes.io/name": self.name}

    def labels(self) -> dict[str, str]:
        """The labels of every namespaced object."""
        return {**self.selector(), "app.kubernetes.io/part-of": "stickyws"}

    def metadata(self, name: str | None = None, **extra: Any) -> dict[str, Any]:
        """``metadata`` of a namespaced object: its name (default :attr:`name`), namespace and labels."""
        return {"name": name or self.name, "namespace": self.namespace, "labels": self.labels(), **extra}
