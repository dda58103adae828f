"""Rules of the registry ElastiCache cache a deployment creates: topology, engine version, authentication,
the pub/sub output buffer and a Serverless cache's client limit; with the ElastiCache limits they use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from stickyws.settings.findings import Finding
from stickyws.settings.rules.engine import REFERENCE, REGISTRY, SERVICE, _error, _info, _warning, define_rule

if TYPE_CHECKING:
    from stickyws.settings.model import Settings


#: Engine versions a new registry is pinned to when ``registry_engine_version`` is empty.
DEFAULT_ENGINE_VERSIONS = {"valkey": "8.0", "redis": "7.1"}
#: Oldest version with sharded pub/sub (SPUBLISH/SSUBSCRIBE), per engine.
SHARDED_PUBSUB_SINCE = {"valkey": (7, 0), "redis": (7, 0)}
#: Oldest version ElastiCache supports IAM authentication on, per engine.
IAM_AUTH_SINCE = {"valkey": (7, 2), "redis": (7, 0)}
#: ``maxclients`` of an ElastiCache Serverless cache (fixed).
SERVERLESS_MAX_CLIENTS = 65_000
#: Serverless fixes ``client-output-buffer-limit pubsub`` at 32 MiB hard, 8 MiB soft for 60 s.
SERVERLESS_PUBSUB_HARD_BYTES = 32 * 1024 * 1024
SERVERLESS_PUBSUB_SOFT_BYTES = 8 * 1024 * 1024
#: Nodes (primaries and replicas) a cluster-mode replication group may have.
MAX_CLUSTER_NODES = 500
#: Registry connections one server holds at most: its command pool (64) and one pub/sub connection.
REGISTRY_CONNECTIONS_PER_SERVER = 65


def engine_version(s: Settings) -> tuple[int, int] | None:
    """``(major, minor)`` of the registry's engine version (the pinned default when empty); ``None`` if unparsable."""
    text = s.registry.registry_engine_version or DEFAULT_ENGINE_VERSIONS.get(s.registry.registry_engine, "")
    match = re.fullmatch(r"(\d+)(?:\.(\d+))?", text.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


@define_rule(
    "registry-topology", "The registry has a replica per shard for failover and a topology its mode allows.", REGISTRY
)
def _registry_topology(s: Settings) -> Iterator[Finding]:
    r = s.registry
    if r.registry_mode == "serverless":
        yield _info(
            "registry-topology",
            "registry_mode=serverless: ElastiCache places and replicates the data across availability zones "
            "itself; registry_shards, registry_replicas_per_shard and registry_node_type do not apply",
            "registry_mode",
        )
        return
    if r.registry_replicas_per_shard < 1:
        yield _error(
            "registry-topology",
            f"registry_replicas_per_shard=0 with registry_mode={r.registry_mode}: no replica can take over, so "
            "Multi-AZ automatic failover is impossible and a failed primary loses the registry",
            "set registry_replicas_per_shard >= 1",
            "registry_replicas_per_shard",
            "registry_mode",
        )
    if r.registry_mode == "single" and r.registry_shards != 1:
        yield _error(
            "registry-topology",
            f"registry_shards={r.registry_shards} with registry_mode=single: a single-primary registry has one shard",
            "set registry_mode=cluster to shard the registry, or registry_shards=1",
            "registry_shards",
            "registry_mode",
        )
    if not re.fullmatch(r"cache\.[a-z0-9]+\.[a-z0-9]+", r.registry_node_type):
        yield _error(
            "registry-topology",
            f"registry_node_type={r.registry_node_type!r} is not an ElastiCache node type",
            "use a name such as cache.t4g.small or cache.r7g.large",
            "registry_node_type",
        )
    nodes = r.registry_shards * (1 + r.registry_replicas_per_shard)
    if r.registry_mode == "cluster" and nodes > MAX_CLUSTER_NODES:
        yield _error(
            "registry-topology",
            f"registry_shards={r.registry_shards} x (1 + registry_replicas_per_shard={r.registry_replicas_per_shard}) "
            f"= {nodes} nodes > {MAX_CLUSTER_NODES}, the most a cluster-mode replication group may have",
            f"keep registry_shards x (1 + registry_replicas_per_shard) <= {MAX_CLUSTER_NODES}",
            "registry_shards",
            "registry_replicas_per_shard",
        )
    if r.registry_mode == "cluster":
        yield _info(
            "registry-topology",
            f"registry_mode=cluster: {r.registry_shards} shard(s) x {1 + r.registry_replicas_per_shard} nodes = "
            f"{r.registry_shards * (1 + r.registry_replicas_per_shard)} cache nodes",
            "registry_shards",
            "registry_replicas_per_shard",
        )


@define_rule(
    "registry-engine", "The engine version parses and supports what the mode and the auth mode need.", REGISTRY
)
def _registry_engine(s: Settings) -> Iterator[Finding]:
    r = s.registry
    version = engine_version(s)
    if version is None:
        yield _error(
            "registry-engine",
            f"registry_engine_version={r.registry_engine_version!r} is not a version such as 8.0",
            "set registry_engine_version to major.minor (e.g. 8.0), or leave it empty for the pinned default",
            "registry_engine_version",
        )
        return
    shown = f"{version[0]}.{version[1]}"
    if r.registry_mode != "single" and version < SHARDED_PUBSUB_SINCE[r.registry_engine]:
        yield _error(
            "registry-engine",
            f"registry_mode={r.registry_mode} with {r.registry_engine} {shown}: sharded pub/sub "
            "(SPUBLISH/SSUBSCRIBE), which a cluster needs for per-server and per-user channels, starts with 7.0",
            "set registry_engine_version to 7.0 or newer (or leave it empty)",
            "registry_engine_version",
            "registry_mode",
        )
    since = IAM_AUTH_SINCE[r.registry_engine]
    if r.registry_auth == "iam" and version < since:
        yield _error(
            "registry-engine",
            f"registry_auth=iam with {r.registry_engine} {shown}: ElastiCache supports IAM authentication from "
            f"{r.registry_engine} {since[0]}.{since[1]}",
            f"set registry_engine_version >= {since[0]}.{since[1]}, or registry_auth=token",
            "registry_engine_version",
            "registry_auth",
        )


@define_rule("registry-auth", "The registry authenticates its clients.", REGISTRY)
def _registry_auth(s: Settings) -> Iterator[Finding]:
    if s.registry.registry_auth == "none":
        yield _warning(
            "registry-auth",
            "registry_auth=none: any client the registry's security group admits may write drain notices, "
            "takeover requests and sessions",
            "set registry_auth=iam (or token)",
            "registry_auth",
        )


@define_rule(
    "registry-pubsub-backlog",
    "A server's pub/sub burst fits the registry's pub/sub output buffer.",
    REGISTRY,
    REFERENCE,
)
def _registry_pubsub(s: Settings) -> Iterator[Finding]:
    r = s.registry
    hard, soft = r.registry_pubsub_buffer_hard_bytes, r.registry_pubsub_buffer_soft_bytes
    if r.registry_mode == "serverless" and (hard, soft) != (SERVERLESS_PUBSUB_HARD_BYTES, SERVERLESS_PUBSUB_SOFT_BYTES):
        yield _error(
            "registry-pubsub-backlog",
            f"registry_pubsub_buffer_hard_bytes={hard}, registry_pubsub_buffer_soft_bytes={soft} with "
            "registry_mode=serverless: Serverless fixes the pub/sub output buffer at 32 MiB hard, 8 MiB soft",
            f"set registry_pubsub_buffer_hard_bytes={SERVERLESS_PUBSUB_HARD_BYTES} and "
            f"registry_pubsub_buffer_soft_bytes={SERVERLESS_PUBSUB_SOFT_BYTES}",
            "registry_pubsub_buffer_hard_bytes",
            "registry_pubsub_buffer_soft_bytes",
        )
        return
    if soft > hard:
        yield _error(
            "registry-pubsub-backlog",
            f"registry_pubsub_buffer_soft_bytes={soft} > registry_pubsub_buffer_hard_bytes={hard}",
            "keep the soft limit at or below the hard limit",
            "registry_pubsub_buffer_soft_bytes",
            "registry_pubsub_buffer_hard_bytes",
        )
        return
    burst = r.registry_pubsub_burst_messages * s.server.max_message_bytes
    names = ("registry_pubsub_burst_messages", "max_message_bytes")
    if burst >= hard:
        yield _error(
            "registry-pubsub-backlog",
            f"registry_pubsub_burst_messages x max_message_bytes = {burst} bytes >= the pub/sub hard limit {hard}: "
            "the registry disconnects a server's subscription in such a burst and every server must resubscribe",
            f"keep registry_pubsub_burst_messages <= {max(1, (hard - 1) // s.server.max_message_bytes)} "
            "or lower max_message_bytes",
            *names,
            "registry_pubsub_buffer_hard_bytes",
        )
    elif soft and burst > soft:
        yield _warning(
            "registry-pubsub-backlog",
            f"registry_pubsub_burst_messages x max_message_bytes = {burst} bytes > the pub/sub soft limit {soft}: "
            "a server that stays this far behind for 60 s loses its subscription",
            f"keep registry_pubsub_burst_messages <= {soft // s.server.max_message_bytes} or lower max_message_bytes",
            *names,
            "registry_pubsub_buffer_soft_bytes",
        )


@define_rule(
    "registry-serverless-clients",
    "Every task's registry connections fit a Serverless cache's client limit.",
    REGISTRY,
    SERVICE,
)
def _registry_serverless_clients(s: Settings) -> Iterator[Finding]:
    if s.registry.registry_mode != "serverless":
        return
    need = s.task.max_count * REGISTRY_CONNECTIONS_PER_SERVER
    if need > SERVERLESS_MAX_CLIENTS:
        yield _error(
            "registry-serverless-clients",
            f"max_count={s.task.max_count} tasks x {REGISTRY_CONNECTIONS_PER_SERVER} registry connections = {need} "
            f"> {SERVERLESS_MAX_CLIENTS}, the client limit of a Serverless cache",
            f"set max_count <= {SERVERLESS_MAX_CLIENTS // REGISTRY_CONNECTIONS_PER_SERVER}, or registry_mode=cluster",
            "max_count",
            "registry_mode",
        )
