"""The settings model: one frozen object that the CDK stack, the container environment, the
HAProxy twin and the auditor all render or read.

Settings are grouped by what they configure (load balancer, target group, server, client,
delivery, task, deployment, registry, kubernetes). Every field name is unique across the groups, so a setting
has one flat name that is used everywhere: CDK context (``cdk synth -c idle_timeout_s=300``), settings files, the
container environment (``STICKYWS_IDLE_TIMEOUT_S``) and the auditor's report.

The module is long on purpose: it is the one table of every setting (declarations and their
documentation, read top to bottom; the README's settings table is generated from it), with no logic
beyond the lookups at its end.

Ranges are *not* enforced on construction: a live load balancer may well be out of range and
the auditor must still describe it. :meth:`Settings.validate` runs the named rules in
:mod:`stickyws.settings.rules` and returns findings; :meth:`Settings.check` raises on errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from stickyws.settings.errors import SettingsError, UnknownSettingError
from stickyws.settings.findings import Finding, Severity
from stickyws.settings.rules import RulePlan, plan, validate
from stickyws.settings.scopes import SERVER_MODES, Scope, parse_server_env
from stickyws.settings.spec import FieldInfo, setting, spec_of
from stickyws.settings.values import env_name, parse_value

DAY_S = 86_400
WEEK_S = 7 * DAY_S

STICKINESS_TYPES = ("lb_cookie", "app_cookie")
DESYNC_MODES = ("monitor", "defensive", "strictest")
CONNECTION_POLICIES = ("takeover", "reject")
REGISTRY_DOWN_POLICIES = ("reject", "accept")
REGISTRY_MODES = ("single", "cluster", "serverless")
REGISTRY_ENGINES = ("valkey", "redis")
REGISTRY_AUTH_MODES = ("iam", "token", "none")
MIB = 1024 * 1024
INBOUND_DELIVERY_MODES = ("exactly_once", "at_most_once")
DEPLOYMENT_STRATEGIES = ("rolling", "blue_green", "linear", "canary")
FARGATE_CPU_UNITS = ("256", "512", "1024", "2048", "4096", "8192", "16384")
K8S_APIS = ("ingress", "gateway")
K8S_TARGET_TYPES = ("ip", "instance")


@dataclass(frozen=True)
class LoadBalancerSettings:
    """Attributes of the Application Load Balancer itself."""

    idle_timeout_s: int = setting(
        120,
        "ALB idle timeout (`idle_timeout.timeout_seconds`): a connection with no data in either "
        "direction for this long is closed. WebSocket pings count as data.",
        unit="s",
        lo=1,
        hi=4000,
    )
    http2_enabled: bool = setting(
        False,
        "`routing.http2.enabled`. Must stay off: WebSocket upgrades are HTTP/1.1 and clients that "
        "negotiate h2 cannot upgrade.",
    )
    client_keep_alive_s: int = setting(
        3600,
        "`client_keep_alive.seconds`: how long the ALB keeps a client's HTTP connection before it "
        "asks the client to reconnect.",
        unit="s",
        lo=60,
        hi=604_800,
    )
    drop_invalid_header_fields: bool = setting(
        True,
        "`routing.http.drop_invalid_header_fields.enabled`: drop headers that are not valid tokens.",
    )
    desync_mitigation_mode: str = setting(
        "defensive",
        "`routing.http.desync_mitigation_mode`: how the ALB treats requests that may smuggle.",
        choices=DESYNC_MODES,
    )
    capacity_reservation_lcu: int = setting(
        0,
        "Load balancer Capacity Units reserved as the ALB's floor (`MinimumLoadBalancerCapacity.CapacityUnits`); "
        "0 reserves none. AWS: at least 100 when set, at most 15,000 per load balancer (default quota), applied "
        "within minutes to hours, lowered at most twice a day, billed while reserved. One LCU is 25 new "
        "connections per second: size it for the reconnect pace of a deployment (`migration_pace_per_s`).",
        unit="LCU",
        lo=0,
        hi=15_000,
    )


@dataclass(frozen=True)
class TargetGroupSettings:
    """Attributes and health check of the target group that holds the server tasks."""

    deregistration_delay_s: int = setting(
        60,
        "`deregistration_delay.timeout_seconds`: how long the ALB drains a deregistering task "
        "before it cuts the connections still open.",
        unit="s",
        lo=0,
        hi=3600,
    )
    stickiness_enabled: bool = setting(True, "`stickiness.enabled`: route a client back to its task.")
    stickiness_type: str = setting(
        "lb_cookie",
        "`stickiness.type`: `lb_cookie` (the ALB issues `AWSALB`) or `app_cookie` (the ALB follows "
        "the application's cookie named by `app_cookie_name`).",
        choices=STICKINESS_TYPES,
    )
    app_cookie_name: str = setting(
        "",
        "`stickiness.app_cookie.cookie_name`, required with `app_cookie`; names starting with "
        "AWSALB, AWSALBAPP or AWSALBTG are reserved.",
    )
    stickiness_duration_s: int = setting(
        DAY_S,
        "`stickiness.lb_cookie.duration_seconds` (or `app_cookie.duration_seconds`): how long the "
        "cookie pins a client to a task.",
        unit="s",
        lo=1,
        hi=WEEK_S,
    )
    health_check_path: str = setting("/health", "Path the ALB polls on each task.")
    health_check_interval_s: int = setting(30, "Health check interval.", unit="s", lo=5, hi=300)
    health_check_timeout_s: int = setting(
        5, "Health check timeout; must be below the interval.", unit="s", lo=2, hi=120
    )
    healthy_threshold_count: int = setting(
        2, "Consecutive successes before a task is healthy.", unit="checks", lo=2, hi=10
    )
    unhealthy_threshold_count: int = setting(
        3, "Consecutive failures before a task is unhealthy.", unit="checks", lo=2, hi=10
    )
    health_check_matcher: str = setting(
        "200",
        "HTTP codes that mean healthy: codes or ranges within 200-499, e.g. `200` or `200-299`.",
    )


@dataclass(frozen=True)
class ServerSettings:
    """The WebSocket server: which one (the reference server or your own), keepalive, drain, registry, limits.

    With ``server_mode=own`` only ``port`` and the settings named in ``server_env`` describe your
    server; the rest belong to the reference server and no rule judges them.
    """

    server_mode: str = setting(
        "reference",
        "`reference`: the stickyws server (every setting is rendered into its environment as `STICKYWS_*`, "
        "with a JWT key, its health check and its metric). `own`: your image; it is told only the settings "
        "named in `server_env`, and rules about the server run only on what it is told.",
        choices=SERVER_MODES,
        source="stickyws",
    )
    server_env: tuple[str, ...] = setting(
        (),
        "With `server_mode=own`: the settings your server is told, as `NAME=VARIABLE` (e.g. "
        "`port=PORT,ping_interval_s=WS_PING_S`; a bare `NAME` uses `STICKYWS_NAME`). Empty: none.",
    )
    port: int = setting(8080, "Port the server listens on inside the task.", lo=1, hi=65535)
    ping_interval_s: float | None = setting(
        30.0,
        "Server WebSocket ping interval; keeps idle connections inside the ALB idle timeout.",
        unit="s",
        lo=0.1,
        hi=3600,
        source="stickyws",
        nullable=True,
    )
    ping_timeout_s: float = setting(
        10.0,
        "How long the server waits for a pong before it closes the connection with 1011.",
        unit="s",
        lo=0.1,
        hi=600,
        source="stickyws",
    )
    handshake_timeout_s: float = setting(
        10.0,
        "How long a new connection may take to send its whole HTTP request (upgrade or plain); a "
        "slower one gets 408 and is closed, so slow clients cannot hold sockets open.",
        unit="s",
        lo=0.5,
        hi=120,
        source="stickyws",
    )
    drain_window_s: float = setting(
        45.0,
        "Window over which a draining server spreads its reconnect instructions (with jitter).",
        unit="s",
        lo=0,
        hi=3600,
        source="stickyws",
    )
    drain_pace_per_s: float = setting(
        250.0,
        "Most reconnect instructions per second one draining server sends: n connections are spread over "
        "max(drain_window_s, n / drain_pace_per_s) until SIGTERM squeezes the rest into shutdown_timeout_s. "
        "0: no limit. The default lets a full server (max_connections=10000) drain within the default window.",
        unit="reconnects/s",
        lo=0,
        hi=100_000,
        source="stickyws",
    )
    revision: str = setting(
        "",
        "The server's deployment revision, written to its heartbeat and sent as `avoid` in its drain `reconnect` "
        "frames: a client that lands on another server of the same revision while one of another revision is "
        "live is sent on. Empty: the ECS task definition's `family:revision` from the task metadata endpoint, "
        "else none.",
    )
    shutdown_timeout_s: float = setting(
        10.0,
        "Hard deadline the server needs after SIGTERM to close what is left and exit.",
        unit="s",
        lo=0,
        hi=120,
        source="stickyws",
    )
    routing_ttl_s: int = setting(
        3600,
        "TTL of the routing key `ws:{u:<user>}:route`, refreshed on activity.",
        unit="s",
        lo=1,
        hi=30 * DAY_S,
        source="stickyws",
    )
    session_ttl_s: int = setting(
        3600,
        "TTL of resumable session state in the registry, refreshed on activity.",
        unit="s",
        lo=1,
        hi=30 * DAY_S,
        source="stickyws",
    )
    heartbeat_interval_s: float = setting(
        10.0,
        "How often each server writes `ws:server:<serverId>:heartbeat`.",
        unit="s",
        lo=0.1,
        hi=3600,
        source="stickyws",
    )
    heartbeat_ttl_s: int = setting(
        30,
        "TTL of the heartbeat key: a server silent for this long counts as gone.",
        unit="s",
        lo=1,
        hi=DAY_S,
        source="stickyws",
    )
    max_connections: int = setting(
        10_000,
        "Connection limit per task; handshakes above it get 503 + Retry-After.",
        unit="connections",
        lo=1,
        hi=1_000_000,
        source="stickyws",
    )
    max_message_bytes: int = setting(
        65_536,
        "Largest accepted message; larger ones close with 1009.",
        unit="bytes",
        lo=128,
        hi=16 * 1024 * 1024,
        source="stickyws",
    )
    permessage_deflate: bool = setting(
        False,
        "Negotiate permessage-deflate. Off by default: it costs memory on every connection.",
    )
    connection_policy: str = setting(
        "takeover",
        "A user already connected on another live server: `takeover` (that server closes the old "
        "connection) or `reject` (409).",
        choices=CONNECTION_POLICIES,
        source="stickyws",
    )
    registry_down_policy: str = setting(
        "reject",
        "New handshakes while the registry (Redis) is unreachable: `reject` (503 + Retry-After) "
        "or `accept` (serve with a fresh session, re-registered when Redis returns).",
        choices=REGISTRY_DOWN_POLICIES,
        source="stickyws",
    )
    allowed_origins: tuple[str, ...] = setting(
        (),
        "Origins allowed to open a WebSocket (comma-separated in the environment). Empty: only "
        "clients that send no Origin (non-browser). `*` allows any origin.",
    )
    jwt_audience: str = setting("stickyws", "Required `aud` claim of connection tokens.")
    drain_poll_target_health: bool = setting(
        False,
        "Also poll `elbv2:DescribeTargetHealth` and start draining when this task is `draining`.",
    )
    target_health_poll_interval_s: float = setting(
        15.0,
        "Mean interval between DescribeTargetHealth polls (jittered).",
        unit="s",
        lo=1,
        hi=600,
        source="stickyws",
    )
    metrics_namespace: str = setting(
        "StickyWebSocket", "CloudWatch namespace of the server's embedded-metric-format lines."
    )


@dataclass(frozen=True)
class ClientSettings:
    """What the reference client does when it has to reconnect."""

    reconnect_base_ms: int = setting(
        1000, "First reconnect backoff (full jitter).", unit="ms", lo=1, hi=600_000, source="stickyws"
    )
    reconnect_cap_s: float = setting(30.0, "Largest reconnect backoff.", unit="s", lo=0.01, hi=DAY_S, source="stickyws")


@dataclass(frozen=True)
class DeliverySettings:
    """Server push: the session outbox, topic history, output bounds and the publish endpoint."""

    inbound_delivery: str = setting(
        "exactly_once",
        "How client `send` messages are handled: `exactly_once` (each is committed to the registry, with "
        "its replies, before its ack: a resend after a reconnect is acknowledged as a duplicate, not handled "
        "again, and replies are replayed on resume) or `at_most_once` (handled and acknowledged without the "
        "commit: no dedup across reconnects, so a message resent after a lost ack is handled again, and "
        "replies go out once, without `seq`, never replayed). Subscribes are committed in both modes.",
        choices=INBOUND_DELIVERY_MODES,
        source="stickyws",
    )

    outbox_max_messages: int = setting(
        1000,
        "Messages each session keeps for replay after a resume (handler replies and pushes to the "
        "user); older ones are dropped and a resuming client is told (`gap` frame).",
        unit="messages",
        lo=1,
        hi=100_000,
        source="stickyws",
    )
    outbox_max_bytes: int = setting(
        1_048_576,
        "Payload bytes each session keeps for replay (the newest message is always kept).",
        unit="bytes",
        lo=1024,
        hi=67_108_864,
        source="stickyws",
    )
    topic_retention_count: int = setting(
        1000,
        "Publications each topic keeps for recovery after a reconnect (a bounded Redis Stream).",
        unit="publications",
        lo=1,
        hi=1_000_000,
        source="stickyws",
    )
    topic_retention_s: int = setting(
        300,
        "How long a topic keeps a publication for recovery; a client that comes back later gets an "
        "`unrecoverable` frame for that topic.",
        unit="s",
        lo=1,
        hi=2_592_000,
        source="stickyws",
    )
    max_output_bytes: int = setting(
        4_194_304,
        "Unsent output a connection may hold (a slow consumer); past it the server closes with 1013 "
        "and the client resumes from its seq and topic offsets.",
        unit="bytes",
        lo=4096,
        hi=1_073_741_824,
        source="stickyws",
    )
    max_publish_bytes: int = setting(
        65536,
        "Largest payload a backend may push to a user or publish to a topic (JSON bytes).",
        unit="bytes",
        lo=16,
        hi=16_777_216,
        source="stickyws",
    )
    ack_wait_replicas: int = setting(
        1,
        "Replicas that must hold a client message's commit or a push to a user before it is acknowledged "
        "(and a push announced): `WAIT` on the connection that wrote it, one per batch, at most as many "
        "replicas as the primary has (none: no wait). A primary failover then cannot lose what was "
        "acknowledged, nor hand its seq to a later message. 0 acknowledges at once.",
        unit="replicas",
        lo=0,
        hi=5,
        source="stickyws",
    )
    ack_wait_timeout_ms: int = setting(
        1000,
        "How long a commit or a push waits for `ack_wait_replicas`. A push past it gets "
        "`registry_unavailable` (send it again with the same idempotency key: it is stored once); a "
        "commit is acknowledged anyway and later ones wait only for the replicas that answered, for the "
        "next few seconds (the replica count is read again every 5 s).",
        unit="ms",
        lo=10,
        hi=10_000,
        source="stickyws",
    )
    publish_port: int = setting(
        8081,
        "Port of the server's HTTP publish endpoint (`POST /v1/publish`), never routed by the ALB; "
        "0 turns it off. It listens only when a publish key is set.",
        lo=0,
        hi=65535,
        source="stickyws",
    )


@dataclass(frozen=True)
class TaskSettings:
    """The ECS Fargate task and service."""

    task_cpu: int = setting(512, "Fargate task CPU units (1024 = 1 vCPU).", unit="units", choices=FARGATE_CPU_UNITS)
    task_memory_mib: int = setting(
        1024, "Fargate task memory; must be a valid pairing with `task_cpu`.", unit="MiB", lo=512, hi=122_880
    )
    stop_timeout_s: int = setting(
        30,
        "Container stopTimeout: time between SIGTERM and SIGKILL (Fargate maximum 120 s).",
        unit="s",
        lo=2,
        hi=120,
    )
    health_check_grace_s: int = setting(
        60,
        "ECS health-check grace period after a task starts.",
        unit="s",
        lo=0,
        hi=2_147_483_647,
    )
    desired_count: int = setting(2, "Tasks at deploy time.", unit="tasks", lo=0, hi=5000)
    min_count: int = setting(2, "Autoscaling minimum.", unit="tasks", lo=0, hi=5000)
    max_count: int = setting(10, "Autoscaling maximum.", unit="tasks", lo=1, hi=5000)
    min_healthy_percent: int = setting(
        100,
        "Deployment minimum healthy percent; 100 keeps every connection's capacity during deploys.",
        unit="%",
        lo=0,
        hi=100,
    )
    max_percent: int = setting(200, "Deployment maximum percent.", unit="%", lo=100, hi=200)
    target_connections_per_task: int = setting(
        5000,
        "Autoscaling target for the server's ActiveConnections metric per task.",
        unit="connections",
        lo=1,
        hi=1_000_000,
        source="stickyws",
    )
    target_cpu_percent: int = setting(60, "Autoscaling target for CPU.", unit="%", lo=1, hi=100)
    scale_in_cooldown_s: int = setting(
        600,
        "Cooldown after a scale-in; long, since each scale-in moves every client of a task.",
        unit="s",
        lo=0,
        hi=86_400,
    )
    scale_out_cooldown_s: int = setting(60, "Cooldown after a scale-out.", unit="s", lo=0, hi=86_400)
    availability_zone_rebalancing: bool = setting(
        True,
        "ECS availability zone rebalancing (`AvailabilityZoneRebalancing`): ECS starts tasks in the emptier zone and "
        "stops tasks in the fuller one; each stop goes through the same drain as any other task stop.",
    )
    scale_in_protection: bool = setting(
        True,
        "Task scale-in protection held by busy tasks (ECS agent endpoint `task-protection/v1/state`), so a "
        "scale-in stops the tasks with the fewest connections; released at drain. Needs "
        "`ecs:UpdateTaskProtection` on the task role (the stack grants it).",
    )
    scale_in_protection_expires_min: int = setting(
        15,
        "`ExpiresInMinutes` of each protection: renewed at half of it, so a task that stops renewing "
        "is unprotected within this time.",
        unit="min",
        lo=1,
        hi=2880,
    )
    scale_in_unprotected_percent: int = setting(
        25,
        "Share of the live tasks, those with the fewest connections, left unprotected (at least one task): "
        "what a scale-in may stop.",
        unit="%",
        lo=1,
        hi=100,
        source="stickyws",
    )


@dataclass(frozen=True)
class DeploymentSettings:
    """How ECS replaces the running tasks with a new revision."""

    deployment_strategy: str = setting(
        "rolling",
        "`rolling` (tasks replaced a few at a time, each drained first), `blue_green` (a new task set behind "
        "the alternate target group, production traffic shifted at once), `linear` (shifted in equal steps) "
        "or `canary` (a first step, then the rest). Weights move new handshakes only: an open WebSocket "
        "stays on blue until it is moved.",
        choices=DEPLOYMENT_STRATEGIES,
    )
    bake_time_min: int = setting(
        15,
        "Blue/green, linear and canary: how long blue is kept after all production traffic has shifted "
        "(rollback without redeploying), before ECS stops it.",
        unit="min",
        lo=0,
        hi=1440,
    )
    traffic_step_percent: float = setting(
        10.0,
        "Linear: the share of new handshakes each step moves (AWS 3-100); canary: the first step's share "
        "(AWS 0.1-100).",
        unit="%",
        lo=0.1,
        hi=100,
    )
    step_bake_time_min: int = setting(
        6, "Linear and canary: how long each step is held before the next.", unit="min", lo=0, hi=1440
    )
    migration_pace_per_s: float = setting(
        200.0,
        "Blue/green, linear and canary: reconnects per second the migration hook may cause across the fleet "
        "when it tells blue's servers to move their clients after the production shift.",
        unit="reconnects/s",
        lo=1,
        hi=100_000,
        source="stickyws",
    )
    migration_window_s: int = setting(
        600,
        "How long the migration hook holds the deployment after the production shift, waiting for blue to "
        "hold no connections; at its end the deployment goes on and cleanup cuts what is left.",
        unit="s",
        lo=1,
        hi=86_400,
        source="stickyws",
    )
    migration_done_connections: int = setting(
        0,
        "Blue counts as empty, and the migration hook answers SUCCEEDED, at or under this many connections.",
        unit="connections",
        lo=0,
        hi=1_000_000,
        source="stickyws",
    )
    migration_hook: bool = setting(
        True,
        "Blue/green, linear and canary: install the migration hook, the lifecycle hook that moves blue's open "
        "WebSockets to green at `migration_pace_per_s` after the production shift (and green's back to blue when a "
        "rollback shifts production back).",
    )


@dataclass(frozen=True)
class RegistrySettings:
    """The ElastiCache connection registry the stack creates: topology, engine, authentication, limits."""

    registry_mode: str = setting(
        "single",
        "`single`: one shard (a primary and its replicas, cluster mode disabled); `cluster`: cluster mode "
        "enabled with `registry_shards` shards; `serverless`: ElastiCache Serverless (always cluster mode).",
        choices=REGISTRY_MODES,
    )
    registry_engine: str = setting("valkey", "Cache engine: `valkey` or `redis` (Redis OSS).", choices=REGISTRY_ENGINES)
    registry_engine_version: str = setting(
        "",
        "Engine version (`major.minor`, e.g. `8.0`); empty: the pinned default (Valkey 8.0, Redis OSS 7.1). "
        "Serverless takes the major version only. Sharded pub/sub and IAM authentication need 7 or newer "
        "(Valkey 7.2, Redis OSS 7.0).",
    )
    registry_shards: int = setting(
        1,
        "Shards (node groups) in `cluster` mode; `single` has exactly one, Serverless scales by itself.",
        unit="shards",
        lo=1,
        hi=500,
    )
    registry_replicas_per_shard: int = setting(
        1,
        "Read replicas per shard; at least one for Multi-AZ automatic failover (ElastiCache allows 0-5).",
        unit="replicas",
        lo=0,
        hi=5,
    )
    registry_node_type: str = setting(
        "cache.t4g.small", "Cache node type of `single` and `cluster` modes (e.g. `cache.r7g.large`)."
    )
    registry_auth: str = setting(
        "iam",
        "How the service and the drain notifier authenticate to the registry (ElastiCache RBAC): `iam` (an "
        "IAM-authenticated user, 15-minute SigV4 tokens, `elasticache:Connect`), `token` (a password kept in "
        "Secrets Manager) or `none` (any client the security group admits may read and write).",
        choices=REGISTRY_AUTH_MODES,
    )
    registry_serverless_max_data_gb: int = setting(
        10,
        "Serverless `CacheUsageLimits.DataStorage.Maximum`: the cache stops accepting writes above it.",
        unit="GB",
        lo=1,
        hi=5000,
    )
    registry_serverless_max_ecpu_per_s: int = setting(
        100_000,
        "Serverless `CacheUsageLimits.ECPUPerSecond.Maximum`: requests beyond it are throttled.",
        unit="ECPU/s",
        lo=1000,
        hi=15_000_000,
    )
    registry_pubsub_buffer_hard_bytes: int = setting(
        32 * MIB,
        "`client-output-buffer-limit pubsub` hard limit: a subscriber connection whose unread backlog "
        "reaches it is disconnected. Serverless fixes it at 32 MiB; node-based caches take the parameter "
        "group's value (ElastiCache default 32 MiB).",
        unit="bytes",
        lo=MIB,
        hi=4096 * MIB,
    )
    registry_pubsub_buffer_soft_bytes: int = setting(
        8 * MIB,
        "`client-output-buffer-limit pubsub` soft limit: a backlog above it for 60 s disconnects the "
        "subscriber. Serverless fixes it at 8 MiB.",
        unit="bytes",
        lo=0,
        hi=4096 * MIB,
    )
    registry_pubsub_burst_messages: int = setting(
        64,
        "Largest burst of pub/sub messages (pushes, publications, takeover and drain notices) that one "
        "server's subscription may receive faster than it reads them; with `max_message_bytes` it bounds "
        "the backlog the registry buffers for that server.",
        unit="messages",
        lo=1,
        hi=1_000_000,
        source="stickyws",
    )


@dataclass(frozen=True)
class KubernetesSettings:
    """The Kubernetes workload on EKS behind the AWS Load Balancer Controller: names, counts, rollout and stop.

    On Kubernetes the pod's deletion sends SIGTERM (after the preStop hook) while the controller deregisters
    its target at the same time; the deregistration reaches the ALB seconds later. So the preStop hook waits
    first, and the grace period covers the wait, the drain and the shutdown (no 120 s cap as on Fargate).
    """

    k8s_namespace: str = setting(
        "stickyws",
        "Namespace of every rendered object (a DNS label: lower-case letters, digits and `-`, at most 63).",
        source="Kubernetes",
    )
    k8s_api: str = setting(
        "ingress",
        "How the ALB is asked for: `ingress` (an Ingress with `alb.ingress.kubernetes.io/*` annotations) or "
        "`gateway` (Gateway API: Gateway, HTTPRoute and the controller's LoadBalancerConfiguration and "
        "TargetGroupConfiguration, controller v3.0 or later).",
        choices=K8S_APIS,
        source="Kubernetes",
    )
    k8s_target_type: str = setting(
        "ip",
        "Target type of the controller's target group: `ip` (pods are the targets, stickiness reaches the pod) "
        "or `instance` (nodes are the targets and kube-proxy picks the pod, so the ALB cookie pins a node only).",
        choices=K8S_TARGET_TYPES,
        source="Kubernetes",
    )
    replicas: int = setting(2, "Pods of the Deployment at apply time.", unit="pods", lo=1, hi=10_000, source="stickyws")
    min_replicas: int = setting(
        2, "HorizontalPodAutoscaler `minReplicas`.", unit="pods", lo=1, hi=10_000, source="stickyws"
    )
    max_replicas: int = setting(
        10, "HorizontalPodAutoscaler `maxReplicas`.", unit="pods", lo=1, hi=10_000, source="stickyws"
    )
    termination_grace_period_s: int = setting(
        90,
        "Pod `terminationGracePeriodSeconds`: from the pod's deletion to SIGKILL, preStop hook included "
        "(no 120 s cap as on Fargate).",
        unit="s",
        lo=1,
        hi=86_400,
        source="stickyws",
    )
    pre_stop_delay_s: int = setting(
        15,
        "How long the preStop hook waits before the server drains (the reference server's "
        "`stickyws server drain-self`, or a `sleep` action for your own server, which drains on the SIGTERM "
        "that follows), so the deregistration reaches the ALB first.",
        unit="s",
        lo=0,
        hi=3600,
        source="stickyws",
    )
    deregistration_propagation_s: int = setting(
        10,
        "How long after a pod starts terminating the controller and the ALB may still send it new requests "
        "(the deregistration's way to the ALB).",
        unit="s",
        lo=0,
        hi=600,
        source="stickyws",
    )
    readiness_gate: bool = setting(
        True,
        "Label the namespace `elbv2.k8s.aws/pod-readiness-gate-inject: enabled`: a rollout waits until each new "
        "pod is a healthy ALB target before it stops an old one (ip targets).",
    )
    pdb_max_unavailable: int = setting(
        1,
        "PodDisruptionBudget `maxUnavailable`: pods a voluntary disruption (node drain, upgrade) may stop at once.",
        unit="pods",
        lo=0,
        hi=10_000,
        source="stickyws",
    )
    max_surge_percent: int = setting(
        25,
        "Deployment rolling update `maxSurge`: new pods started above `replicas` during a rollout.",
        unit="%",
        lo=0,
        hi=100,
        source="stickyws",
    )
    max_unavailable_percent: int = setting(
        0,
        "Deployment rolling update `maxUnavailable`: pods that may be missing during a rollout; 0 starts each "
        "replacement before an old pod drains.",
        unit="%",
        lo=0,
        hi=100,
        source="Kubernetes",
    )


GROUPS: tuple[tuple[str, type[Any]], ...] = (
    ("load_balancer", LoadBalancerSettings),
    ("target_group", TargetGroupSettings),
    ("server", ServerSettings),
    ("client", ClientSettings),
    ("delivery", DeliverySettings),
    ("task", TaskSettings),
    ("deployment", DeploymentSettings),
    ("registry", RegistrySettings),
    ("kubernetes", KubernetesSettings),
)


def _index() -> dict[str, FieldInfo]:
    import typing

    index: dict[str, FieldInfo] = {}
    for group_name, cls in GROUPS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in index:
                raise TypeError(f"setting {f.name!r} is declared in two groups")
            index[f.name] = FieldInfo(f.name, group_name, spec_of(f), f.default, hints[f.name])
    return index


FIELDS: Mapping[str, FieldInfo] = _index()


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one sticky WebSocket deployment.

    Build one with defaults (``Settings()``), with groups (``Settings(server=ServerSettings(...))``)
    or from flat names (``Settings().with_overrides({"idle_timeout_s": 300})``).
    """

    load_balancer: LoadBalancerSettings = dataclasses.field(default_factory=LoadBalancerSettings)
    target_group: TargetGroupSettings = dataclasses.field(default_factory=TargetGroupSettings)
    server: ServerSettings = dataclasses.field(default_factory=ServerSettings)
    client: ClientSettings = dataclasses.field(default_factory=ClientSettings)
    delivery: DeliverySettings = dataclasses.field(default_factory=DeliverySettings)
    task: TaskSettings = dataclasses.field(default_factory=TaskSettings)
    deployment: DeploymentSettings = dataclasses.field(default_factory=DeploymentSettings)
    registry: RegistrySettings = dataclasses.field(default_factory=RegistrySettings)
    kubernetes: KubernetesSettings = dataclasses.field(default_factory=KubernetesSettings)

    fields_index: ClassVar[Mapping[str, FieldInfo]] = FIELDS

    def __getitem__(self, name: str) -> Any:
        """The value of the setting with this flat name."""
        info = _info(name)
        return getattr(getattr(self, info.group), name)

    def items(self) -> Iterator[tuple[str, Any]]:
        """Every ``(flat name, value)`` pair, in declaration order."""
        for name in FIELDS:
            yield name, self[name]

    def as_dict(self) -> dict[str, Any]:
        """Flat ``{name: value}`` of every setting."""
        return dict(self.items())

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """A copy with the named settings replaced; string values are parsed by the field's type.

        Raises :class:`stickyws.settings.errors.SettingsError` for an unknown name or a value
        that cannot be parsed (the message lists the valid names or the expected type).
        """
        per_group: dict[str, dict[str, Any]] = {}
        for name, raw in overrides.items():
            info = _info(name)
            per_group.setdefault(info.group, {})[name] = parse_value(info, raw)
        changes = {group: dataclasses.replace(getattr(self, group), **values) for group, values in per_group.items()}
        return dataclasses.replace(self, **changes)

    @property
    def own_server(self) -> bool:
        """True with ``server_mode=own``: the deployment runs your image, not the reference server."""
        return bool(self.server.server_mode == "own")

    def told_env(self) -> dict[str, str]:
        """``{setting name: environment variable}`` of the settings your server is told (``server_env``).

        Entries the ``server-env`` rule refuses are left out. Empty for the reference server, which reads
        every setting as ``STICKYWS_<NAME>``.
        """
        if not self.own_server:
            return {}
        return parse_server_env(self.server.server_env, {name: env_name(name) for name in FIELDS})[0]

    def validate(self, parts: Iterable[Scope] | None = None) -> list[Finding]:
        """Findings of the rules that apply to ``parts`` (default: a whole stack), errors first.

        ``parts`` names what the deployment in front of the rules has, from
        :data:`stickyws.settings.scopes.PARTS`; see :func:`stickyws.settings.rules.plan`. An empty list
        means nothing to report.
        """
        return validate(self, parts=parts)

    def plan(self, parts: Iterable[Scope] | None = None) -> RulePlan:
        """Which rules run for ``parts`` and which are skipped, each with its reason."""
        return plan(self, parts)

    def check(self, parts: Iterable[Scope] | None = None) -> list[Finding]:
        """Raise :class:`SettingsError` if a rule for ``parts`` reports an error; else return the other findings."""
        findings = self.validate(parts)
        errors = [f for f in findings if f.severity is Severity.ERROR]
        if errors:
            raise SettingsError(errors)
        return findings


def _info(name: str) -> FieldInfo:
    try:
        return FIELDS[name]
    except KeyError:
        raise UnknownSettingError(name, FIELDS) from None
