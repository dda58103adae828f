"""Where each setting lives in AWS: attribute keys and property names, and the defaults AWS applies.

The one table from the settings model's flat names to AWS names. The CDK constructs render the
load balancer and target group attributes from it, and the auditor reads a template or a live
deployment back through it (:mod:`stickyws.audit.mapping`). Each row is ``(setting, AWS name,
AWS default text)``: the default is what AWS applies when a source leaves the attribute unset
(``routing.http2.enabled`` omitted means HTTP/2 *on*).

AWS defaults below: Elastic Load Balancing and ECS API references.
"""

from __future__ import annotations

#: (setting, load balancer attribute key, AWS default text)
LOAD_BALANCER_ATTRIBUTES: tuple[tuple[str, str, str], ...] = (
    ("idle_timeout_s", "idle_timeout.timeout_seconds", "60"),
    ("http2_enabled", "routing.http2.enabled", "true"),
    ("client_keep_alive_s", "client_keep_alive.seconds", "3600"),
    ("drop_invalid_header_fields", "routing.http.drop_invalid_header_fields.enabled", "false"),
    ("desync_mitigation_mode", "routing.http.desync_mitigation_mode", "defensive"),
)

#: (setting, target group attribute key, AWS default text); the cookie keys depend on the type.
TARGET_GROUP_ATTRIBUTES: tuple[tuple[str, str, str], ...] = (
    ("deregistration_delay_s", "deregistration_delay.timeout_seconds", "300"),
    ("stickiness_enabled", "stickiness.enabled", "false"),
    ("stickiness_type", "stickiness.type", "lb_cookie"),
)
STICKINESS_DURATION_KEYS = {
    "lb_cookie": "stickiness.lb_cookie.duration_seconds",
    "app_cookie": "stickiness.app_cookie.duration_seconds",
}
STICKINESS_DURATION_DEFAULT = "86400"
APP_COOKIE_NAME_KEY = "stickiness.app_cookie.cookie_name"

#: (setting, HealthCheck field, target group property, AWS default text for an HTTP target group)
HEALTH_CHECK_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("health_check_path", "path", "HealthCheckPath", "/"),
    ("health_check_interval_s", "interval_s", "HealthCheckIntervalSeconds", "30"),
    ("health_check_timeout_s", "timeout_s", "HealthCheckTimeoutSeconds", "5"),
    ("healthy_threshold_count", "healthy_threshold", "HealthyThresholdCount", "5"),
    ("unhealthy_threshold_count", "unhealthy_threshold", "UnhealthyThresholdCount", "2"),
    ("health_check_matcher", "matcher", "Matcher.HttpCode", "200"),
)

#: (setting, Service field, ECS name, AWS default text or None when ECS has no default)
SERVICE_FIELDS: tuple[tuple[str, str, str, str | None], ...] = (
    ("desired_count", "desired_count", "desiredCount", None),
    ("min_healthy_percent", "min_healthy_percent", "deploymentConfiguration.minimumHealthyPercent", "100"),
    ("max_percent", "max_percent", "deploymentConfiguration.maximumPercent", "200"),
    ("health_check_grace_s", "health_check_grace_s", "healthCheckGracePeriodSeconds", "0"),
)

#: Fargate's stopTimeout when the container definition sets none.
FARGATE_STOP_TIMEOUT_DEFAULT = "30"

#: (setting, Registry field, where it is read) -- the connection registry's cache.
REGISTRY_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("registry_mode", "mode", "cluster mode / Serverless"),
    ("registry_engine", "engine", "Engine"),
    ("registry_engine_version", "engine_version", "EngineVersion (Serverless: MajorEngineVersion)"),
    ("registry_node_type", "node_type", "CacheNodeType"),
    ("registry_shards", "shards", "NumNodeGroups (node groups)"),
    ("registry_replicas_per_shard", "replicas_per_shard", "ReplicasPerNodeGroup (or NumCacheClusters - 1)"),
    ("registry_auth", "auth", "user group users' authentication type (or AuthToken)"),
)

#: Settings that describe the infrastructure (read from AWS resources) rather than the application.
INFRA_SETTINGS: frozenset[str] = frozenset(
    [s for s, _, _ in LOAD_BALANCER_ATTRIBUTES]
    + [s for s, _, _ in TARGET_GROUP_ATTRIBUTES]
    + ["stickiness_duration_s", "app_cookie_name"]
    + [s for s, _, _, _ in HEALTH_CHECK_FIELDS]
    + [s for s, _, _, _ in SERVICE_FIELDS]
    + ["stop_timeout_s", "task_cpu", "task_memory_mib"]
    + [s for s, _, _ in REGISTRY_FIELDS]
)
