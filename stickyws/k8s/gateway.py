"""The Gateway API path: GatewayClass, Gateway, HTTPRoute and the controller's LoadBalancerConfiguration and
TargetGroupConfiguration (``gateway.k8s.aws/v1``, AWS Load Balancer Controller v3.0 or later).

The LoadBalancerConfiguration (named by the Gateway's ``infrastructure.parametersRef``) carries the load
balancer's attributes, scheme and HTTPS listener; the TargetGroupConfiguration (``targetReference`` the
Service) the target type, health check and target group attributes.
"""

from __future__ import annotations

from typing import Any

from stickyws.k8s.alb import SSL_POLICY, as_key_values, load_balancer_attributes, target_group_attributes
from stickyws.k8s.app import WebSocketApp

GATEWAY_API = "gateway.networking.k8s.io/v1"
CONTROLLER_GROUP = "gateway.k8s.aws"
CONTROLLER_API = f"{CONTROLLER_GROUP}/v1"
#: The controller name of the AWS Load Balancer Controller's ALB gateways.
CONTROLLER_NAME = "gateway.k8s.aws/alb"


def gateway_class(app: WebSocketApp) -> dict[str, Any]:
    """The GatewayClass of the controller's ALB gateways (cluster-scoped)."""
    return {
        "apiVersion": GATEWAY_API,
        "kind": "GatewayClass",
        "metadata": {"name": app.gateway_class, "labels": {"app.kubernetes.io/part-of": "stickyws"}},
        "spec": {"controllerName": CONTROLLER_NAME},
    }


def _listener(app: WebSocketApp) -> tuple[str, str, int]:
    """``(name, protocol, port)`` of the one listener."""
    return ("https", "HTTPS", 443) if app.certificate_arn else ("http", "HTTP", 80)


def gateway(app: WebSocketApp) -> dict[str, Any]:
    """The Gateway: one listener, parameters from the LoadBalancerConfiguration of the same name."""
    name, protocol, port = _listener(app)
    return {
        "apiVersion": GATEWAY_API,
        "kind": "Gateway",
        "metadata": app.metadata(),
        "spec": {
            "gatewayClassName": app.gateway_class,
            "infrastructure": {
                "parametersRef": {"group": CONTROLLER_GROUP, "kind": "LoadBalancerConfiguration", "name": app.name}
            },
            "listeners": [
                {"name": name, "protocol": protocol, "port": port, "allowedRoutes": {"namespaces": {"from": "Same"}}}
            ],
        },
    }


def load_balancer_configuration(app: WebSocketApp) -> dict[str, Any]:
    """The load balancer's scheme, attributes and (with a certificate) the HTTPS listener's certificate."""
    spec: dict[str, Any] = {
        "scheme": "internet-facing" if app.internet_facing else "internal",
        "loadBalancerAttributes": as_key_values(load_balancer_attributes(app.settings)),
    }
    if app.certificate_arn:
        spec["listenerConfigurations"] = [
            {"protocolPort": "HTTPS:443", "defaultCertificate": app.certificate_arn, "sslPolicy": SSL_POLICY}
        ]
    return {"apiVersion": CONTROLLER_API, "kind": "LoadBalancerConfiguration", "metadata": app.metadata(), "spec": spec}


def target_group_configuration(app: WebSocketApp) -> dict[str, Any]:
    """The Service's target group: target type, HTTP/1.1, health check and attributes."""
    s = app.settings
    tg = s.target_group
    return {
        "apiVersion": CONTROLLER_API,
        "kind": "TargetGroupConfiguration",
        "metadata": app.metadata(),
        "spec": {
            "targetReference": {"kind": "Service", "name": app.name},
            "defaultConfiguration": {
                "targetType": s.kubernetes.k8s_target_type,
                "protocol": "HTTP",
                "protocolVersion": "HTTP1",
                "healthCheckConfig": {
                    "healthCheckProtocol": "HTTP",
                    "healthCheckPath": tg.health_check_path,
                    "healthCheckInterval": tg.health_check_interval_s,
                    "healthCheckTimeout": tg.health_check_timeout_s,
                    "healthyThresholdCount": tg.healthy_threshold_count,
                    "unhealthyThresholdCount": tg.unhealthy_threshold_count,
                    "matcher": {"httpCode": tg.health_check_matcher},
                },
                "targetGroupAttributes": as_key_values(target_group_attributes(s)),
            },
        },
    }


def http_route(app: WebSocketApp) -> dict[str, Any]:
    """The HTTPRoute: every request on the Gateway's listener to the Service."""
    name, _protocol, _port = _listener(app)
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": app.metadata(),
        "spec": {
            "parentRefs": [
                {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": app.name, "sectionName": name}
            ],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": app.name, "port": app.port}],
                }
            ],
        },
    }


def objects(app: WebSocketApp) -> list[dict[str, Any]]:
    """The objects of the Gateway API path, each after the ones it names."""
    return [
        gateway_class(app),
        load_balancer_configuration(app),
        gateway(app),
        target_group_configuration(app),
        http_route(app),
    ]
