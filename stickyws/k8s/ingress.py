"""The Ingress the AWS Load Balancer Controller turns into an ALB, with every setting as an annotation.

``alb.ingress.kubernetes.io/load-balancer-attributes`` carries the load balancer's attributes (idle timeout,
``routing.http2.enabled``, ...), ``target-group-attributes`` the deregistration delay and stickiness, the
``healthcheck-*`` annotations the target group's health check, ``target-type`` the target type.
"""

from __future__ import annotations

import json
from typing import Any

from stickyws.k8s.alb import SSL_POLICY, joined, load_balancer_attributes, target_group_attributes
from stickyws.k8s.app import INGRESS_CLASS, WebSocketApp

#: Prefix of the controller's Ingress annotations.
PREFIX = "alb.ingress.kubernetes.io/"


def alb_annotations(app: WebSocketApp) -> dict[str, str]:
    """Every ``alb.ingress.kubernetes.io/*`` annotation the settings and the app's choices set."""
    s = app.settings
    tg = s.target_group
    values = {
        "scheme": "internet-facing" if app.internet_facing else "internal",
        "target-type": s.kubernetes.k8s_target_type,
        "load-balancer-attributes": joined(load_balancer_attributes(s)),
        "target-group-attributes": joined(target_group_attributes(s)),
        "backend-protocol": "HTTP",
        "healthcheck-protocol": "HTTP",
        "healthcheck-port": "traffic-port",
        "healthcheck-path": tg.health_check_path,
        "healthcheck-interval-seconds": str(tg.health_check_interval_s),
        "healthcheck-timeout-seconds": str(tg.health_check_timeout_s),
        "healthy-threshold-count": str(tg.healthy_threshold_count),
        "unhealthy-threshold-count": str(tg.unhealthy_threshold_count),
        "success-codes": tg.health_check_matcher,
    }
    if app.certificate_arn:
        values["listen-ports"] = json.dumps([{"HTTPS": 443}])
        values["certificate-arn"] = app.certificate_arn
        values["ssl-policy"] = SSL_POLICY
    else:
        values["listen-ports"] = json.dumps([{"HTTP": 80}])
    return {PREFIX + key: value for key, value in values.items()}


def ingress(app: WebSocketApp) -> dict[str, Any]:
    """The Ingress of class ``alb``: every path to the Service, annotated with the settings."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": app.metadata(annotations=alb_annotations(app)),
        "spec": {
            "ingressClassName": INGRESS_CLASS,
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": app.name, "port": {"number": app.port}}},
                            }
                        ]
                    }
                }
            ],
        },
    }


def objects(app: WebSocketApp) -> list[dict[str, Any]]:
    """The objects of the Ingress path: the Ingress alone (the controller's chart installs the class)."""
    return [ingress(app)]
