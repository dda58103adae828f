"""Each named settings rule passes the defaults and reports one deliberately broken setting."""

from __future__ import annotations

import pytest

from stickyws.settings import RULES, Settings, Severity, validate
from stickyws.settings.rules import deployment_plan_min

DEFAULTS = Settings()


def errors(settings: Settings, rule_id: str) -> list[str]:
    return [f.message for f in validate(settings, [rule_id]) if f.severity is Severity.ERROR]


def test_defaults_have_no_errors_or_warnings() -> None:
    """The default settings pass every rule with info findings only."""
    assert {f.severity for f in DEFAULTS.validate()} == {Severity.INFO}


BROKEN = [
    ("in-range", {"idle_timeout_s": 4001}, "idle_timeout_s=4001 is outside the AWS range 1-4000 s"),
    ("in-range", {"deregistration_delay_s": 3601}, "deregistration_delay_s=3601 is outside"),
    ("in-range", {"stop_timeout_s": 150}, "stop_timeout_s=150 is outside the AWS range 2-120 s"),
    ("in-range", {"stickiness_duration_s": 604_801}, "stickiness_duration_s=604801 is outside"),
    ("in-range", {"health_check_interval_s": 400}, "health_check_interval_s=400 is outside"),
    ("in-range", {"stickiness_type": "source_ip"}, "stickiness_type='source_ip' is not one of"),
    ("in-range", {"task_cpu": 300}, "task_cpu=300 is not one of"),
    ("http2-off", {"http2_enabled": True}, "http2_enabled=true"),
    ("ping-within-idle-timeout", {"ping_interval_s": 61}, "ping_interval_s=61 > idle_timeout_s/2=60"),
    ("drain-within-deregistration-delay", {"drain_window_s": 61}, "drain_window_s=61 > deregistration_delay_s=60"),
    ("stop-timeout-covers-shutdown", {"stop_timeout_s": 5}, "stop_timeout_s=5 < shutdown_timeout_s=10"),
    ("health-check-timing", {"health_check_timeout_s": 30}, "health_check_timeout_s=30 >= health_check_interval_s=30"),
    ("health-check-timing", {"health_check_matcher": "500"}, "health_check_matcher='500' is not codes"),
    ("stickiness", {"stickiness_enabled": False}, "stickiness_enabled=false"),
    ("stickiness", {"stickiness_type": "app_cookie"}, "stickiness_type=app_cookie needs app_cookie_name"),
    ("stickiness", {"stickiness_type": "app_cookie", "app_cookie_name": "AWSALBAPP-x"}, "reserves"),
    ("stickiness", {"stickiness_duration_s": 20}, "stickiness_duration_s=20 < reconnect_cap_s=30"),
    (
        "capacity-reservation",
        {"capacity_reservation_lcu": 99},
        "capacity_reservation_lcu=99: an Application Load Balancer reserves at least 100 LCU",
    ),
    ("registry-ttl-order", {"routing_ttl_s": 30}, "routing_ttl_s=30 <= heartbeat_ttl_s=30"),
    ("registry-ttl-order", {"heartbeat_ttl_s": 10}, "heartbeat_ttl_s=10 <= heartbeat_interval_s=10"),
    ("fargate-task-size", {"task_memory_mib": 512}, "task_memory_mib=512 is not valid with task_cpu=512"),
    ("task-counts", {"min_count": 3}, "min_count=3, desired_count=2, max_count=10 are out of order"),
    ("deployment-keeps-capacity", {"max_percent": 100}, "a deployment can neither stop nor start a task"),
    ("scaling-below-limit", {"target_connections_per_task": 20_000}, "target_connections_per_task=20000 >"),
    ("topic-retention-covers-reconnect", {"topic_retention_s": 60}, "topic_retention_s=60 < drain_window_s"),
    ("output-bound-fits-messages", {"max_output_bytes": 65536}, "max_output_bytes=65536 < 2 x the largest message"),
    ("publish-port-apart", {"publish_port": 8080}, "publish_port=8080 is the WebSocket port"),
    ("deployment-plan", {"deployment_strategy": "linear", "traffic_step_percent": 2}, "ECS takes 3-100 %"),
    ("deployment-plan", {"deployment_strategy": "canary", "traffic_step_percent": 5.05}, "in steps of 0.1"),
    (
        "deployment-plan",
        {"deployment_strategy": "linear", "traffic_step_percent": 10, "step_bake_time_min": 200},
        "deployment_strategy=linear plans 2015 min of step bakes and bake, more than the 1980 min",
    ),
    ("server-env", {"server_env": "port=PORT"}, "server_env='port=PORT' with server_mode=reference"),
    ("server-env", {"server_mode": "own", "server_env": "nope=X"}, "'nope=X' does not name a setting"),
    ("server-env", {"server_mode": "own", "server_env": "port=1BAD"}, "'1BAD' is not an environment variable name"),
    ("server-env", {"server_mode": "own", "server_env": "port=P,ping_interval_s=P"}, "two settings the variable P"),
    ("server-env", {"server_mode": "own", "server_env": "port=P,port=Q"}, "server_env names port twice"),
    ("in-range", {"registry_mode": "sentinel"}, "registry_mode='sentinel' is not one of single | cluster"),
    ("in-range", {"registry_replicas_per_shard": 6}, "registry_replicas_per_shard=6 is outside the AWS range 0-5"),
    ("in-range", {"registry_shards": 501}, "registry_shards=501 is outside the AWS range 1-500 shards"),
    ("registry-topology", {"registry_mode": "cluster", "registry_replicas_per_shard": 0}, "Multi-AZ automatic"),
    (
        "registry-topology",
        {"registry_replicas_per_shard": 0},
        "registry_replicas_per_shard=0 with registry_mode=single",
    ),
    ("registry-topology", {"registry_shards": 3}, "registry_shards=3 with registry_mode=single"),
    (
        "registry-topology",
        {"registry_mode": "cluster", "registry_shards": 200, "registry_replicas_per_shard": 2},
        "registry_shards=200 x (1 + registry_replicas_per_shard=2) = 600 nodes > 500",
    ),
    ("registry-topology", {"registry_node_type": "t4g.small"}, "registry_node_type='t4g.small' is not an"),
    ("registry-engine", {"registry_engine_version": "latest"}, "registry_engine_version='latest' is not a version"),
    (
        "registry-engine",
        {
            "registry_mode": "cluster",
            "registry_engine": "redis",
            "registry_engine_version": "6.2",
            "registry_auth": "token",
        },
        "sharded pub/sub (SPUBLISH/SSUBSCRIBE), which a cluster needs",
    ),
    (
        "registry-engine",
        {"registry_engine_version": "7.1"},
        "registry_auth=iam with valkey 7.1: ElastiCache supports IAM authentication from valkey 7.2",
    ),
    (
        "registry-pubsub-backlog",
        {"registry_pubsub_burst_messages": 512},
        "registry_pubsub_burst_messages x max_message_bytes = 33554432 bytes >= the pub/sub hard limit 33554432",
    ),
    (
        "registry-pubsub-backlog",
        {"registry_mode": "serverless", "registry_pubsub_buffer_hard_bytes": 64 * 1024 * 1024},
        "Serverless fixes the pub/sub output buffer at 32 MiB hard, 8 MiB soft",
    ),
    (
        "registry-pubsub-backlog",
        {"registry_pubsub_buffer_soft_bytes": 64 * 1024 * 1024},
        "registry_pubsub_buffer_soft_bytes=67108864 > registry_pubsub_buffer_hard_bytes=33554432",
    ),
    (
        "registry-serverless-clients",
        {"registry_mode": "serverless", "max_count": 1001},
        "max_count=1001 tasks x 65 registry connections = 65065 > 65000",
    ),
    (
        "scale-in-protection-renewal",
        {"scale_in_protection_expires_min": 1, "heartbeat_interval_s": 30},
        "heartbeat_interval_s=30 >= half of scale_in_protection_expires_min=1 (30 s)",
    ),
]

WARNED = [
    (
        "drain-pace-within-deregistration-delay",
        {"drain_pace_per_s": 100},
        "max_connections=10000 at drain_pace_per_s=100 take 100 s to drain, more than deregistration_delay_s=60",
    ),
    (
        "migration-pace-covers-fleet",
        {"deployment_strategy": "blue_green", "migration_pace_per_s": 10},
        "desired_count x target_connections_per_task = 10000 clients at migration_pace_per_s=10 take 1000 s",
    ),
    (
        "deployment-moves-connections",
        {"deployment_strategy": "blue_green", "migration_hook": False},
        "deployment_strategy=blue_green with migration_hook=false: the traffic shift moves new handshakes only",
    ),
    ("registry-auth", {"registry_auth": "none"}, "registry_auth=none: any client the registry's security group"),
    (
        "registry-pubsub-backlog",
        {"registry_pubsub_burst_messages": 129},
        "registry_pubsub_burst_messages x max_message_bytes = 8454144 bytes > the pub/sub soft limit 8388608",
    ),
]


@pytest.mark.parametrize(("rule_id", "overrides", "expected"), WARNED)
def test_rule_warns_on_risky_setting(rule_id: str, overrides: dict[str, object], expected: str) -> None:
    """The rule reports exactly one warning and no error for a risky but possible setting."""
    findings = validate(DEFAULTS.with_overrides(overrides), [rule_id])
    assert [f.severity for f in findings] == [Severity.WARNING]
    assert expected in findings[0].message


def test_registry_modes_with_defaults_pass() -> None:
    """cluster (3 shards) and serverless with otherwise default settings pass every rule without errors or warnings."""
    for overrides in ({"registry_mode": "cluster", "registry_shards": 3}, {"registry_mode": "serverless"}):
        assert {f.severity for f in DEFAULTS.with_overrides(overrides).validate()} == {Severity.INFO}


def test_registry_connection_count_matches_the_registry_pool() -> None:
    """The Serverless client rule counts the real RedisRegistry pool plus its one pub/sub connection."""
    from stickyws.registry.redis_connection import POOL_SIZE
    from stickyws.settings.rules import REGISTRY_CONNECTIONS_PER_SERVER

    assert REGISTRY_CONNECTIONS_PER_SERVER == POOL_SIZE + 1


@pytest.mark.parametrize(("rule_id", "overrides", "expected"), BROKEN)
def test_rule_reports_broken_setting(rule_id: str, overrides: dict[str, object], expected: str) -> None:
    """The rule reports exactly one error, naming the broken setting, and the defaults pass it."""
    assert errors(DEFAULTS, rule_id) == []
    found = errors(DEFAULTS.with_overrides(overrides), rule_id)
    assert len(found) == 1
    assert expected in found[0]


def test_every_rule_has_a_failing_case() -> None:
    """No rule goes untested: each registered rule appears in BROKEN (the Kubernetes rules, which judge only a
    Kubernetes deployment, in tests/settings/test_kubernetes_rules.py)."""
    from tests.settings.test_kubernetes_rules import BROKEN_K8S

    k8s = {rule_id for rule_id, _, _, _ in BROKEN_K8S}
    assert {rule_id for rule_id, _, _ in BROKEN + WARNED} == set(RULES) - k8s


def test_pings_off_is_a_warning_not_an_error() -> None:
    """Disabled pings warn that idle connections will be cut, without stopping a deployment."""
    findings = validate(DEFAULTS.with_overrides({"ping_interval_s": "off"}), ["ping-within-idle-timeout"])
    assert [(f.severity, f.settings) for f in findings] == [(Severity.WARNING, ("ping_interval_s", "idle_timeout_s"))]


def test_min_healthy_below_100_warns() -> None:
    """A deployment that may stop tasks before replacements exist is a warning."""
    findings = validate(DEFAULTS.with_overrides({"min_healthy_percent": 50}), ["deployment-keeps-capacity"])
    assert [f.severity for f in findings] == [Severity.WARNING]


def test_time_to_healthy_is_reported() -> None:
    """The health-check rule reports interval x healthy threshold as information."""
    infos = [f.message for f in validate(DEFAULTS, ["health-check-timing"]) if f.severity is Severity.INFO]
    assert infos == [
        "a new task is healthy after about 60 s (interval x healthy threshold); a failed one is out after about 90 s"
    ]


def test_every_fix_names_a_setting() -> None:
    """Every error says how to fix it and names the settings it is about."""
    for _, overrides, _ in BROKEN:
        for finding in DEFAULTS.with_overrides(overrides).validate():
            if finding.severity is Severity.ERROR:
                assert finding.fix
                assert finding.settings


@pytest.mark.parametrize(
    ("overrides", "minutes"),
    [
        ({}, 0.0),
        ({"deployment_strategy": "blue_green", "bake_time_min": 1440}, 1440.0),
        ({"deployment_strategy": "canary", "traffic_step_percent": 5, "step_bake_time_min": 10}, 25.0),
        ({"deployment_strategy": "linear", "traffic_step_percent": 30, "step_bake_time_min": 5}, 35.0),
    ],
)
def test_deployment_plan_minutes(overrides: dict[str, object], minutes: float) -> None:
    """The plan's length is its step bakes (one per linear step, the last one short) plus the bake."""
    assert deployment_plan_min(DEFAULTS.with_overrides(overrides)) == minutes
