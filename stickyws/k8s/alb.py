"""The ALB's attributes and health check from the settings, in the forms the AWS Load Balancer Controller takes.

The keys come from the settings model's AWS names table (:mod:`stickyws.settings.aws_names`), the same
table the CDK constructs render and the auditor reads back, so an Ingress annotation, a Gateway API
``LoadBalancerConfiguration`` and a CloudFormation template carry the very same attribute keys and values.
"""

from __future__ import annotations

from stickyws.settings import Settings, render_value
from stickyws.settings.aws_names import (
    APP_COOKIE_NAME_KEY,
    LOAD_BALANCER_ATTRIBUTES,
    STICKINESS_DURATION_KEYS,
    TARGET_GROUP_ATTRIBUTES,
)

#: The TLS policy of an HTTPS listener (CDK's ``SslPolicy.RECOMMENDED_TLS``, as the ECS stack uses).
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


def load_balancer_attributes(settings: Settings) -> list[tuple[str, str]]:
    """``(attribute key, value)`` of every load balancer attribute the settings set, in table order."""
    return [(key, render_value(settings[name])) for name, key, _default in LOAD_BALANCER_ATTRIBUTES]


def target_group_attributes(settings: Settings) -> list[tuple[str, str]]:
    """``(attribute key, value)`` of the target group: deregistration delay and stickiness.

    With stickiness off only ``stickiness.enabled=false`` is given for it; with ``app_cookie`` the cookie
    name follows the type.
    """
    pairs = [(key, render_value(settings[name])) for name, key, _default in TARGET_GROUP_ATTRIBUTES]
    tg = settings.target_group
    if not tg.stickiness_enabled:
        return [(key, value) for key, value in pairs if key != "stickiness.type"]
    duration_key = STICKINESS_DURATION_KEYS.get(tg.stickiness_type)
    if duration_key:
        pairs.append((duration_key, str(tg.stickiness_duration_s)))
    if tg.stickiness_type == "app_cookie":
        pairs.append((APP_COOKIE_NAME_KEY, tg.app_cookie_name))
    return pairs


def joined(pairs: list[tuple[str, str]]) -> str:
    """Attributes as one annotation value: ``key=value,key=value``."""
    return ",".join(f"{key}={value}" for key, value in pairs)


def as_key_values(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Attributes as the controller's CRDs list them: ``[{"key": ..., "value": ...}]``."""
    return [{"key": key, "value": value} for key, value in pairs]
