"""The connection registry: a Valkey (or Redis OSS) replication group, or an existing endpoint.

The servers keep routing keys, sessions, heartbeats and drain notices there (key schema in
:mod:`stickyws.keys`). :class:`ConnectionRegistry` creates an ElastiCache replication group with
cluster mode disabled (one shard: a primary and ``replicas`` read replicas), Multi-AZ with automatic
failover, encryption in transit (TLS, hence ``rediss://``) and at rest, in the VPC's private
subnets, behind a security group that admits only the peers passed to :meth:`allow_from`.

Or it wraps an existing endpoint (``existing_url``): no resources are created, and reaching that
endpoint is the owner's business.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from aws_cdk import Fn, Token
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from constructs import Construct

from constructs_lib.nag import acknowledge

ENGINES: Final = ("valkey", "redis")
#: Engine versions the replication group is pinned to (major.minor, as ElastiCache takes them).
ENGINE_VERSIONS: Final = {"valkey": "8.0", "redis": "7.1"}
#: Port of a new replication group. Not the well-known 6379 (cdk-nag AwsSolutions-AEC5).
DEFAULT_PORT: Final = 6380
#: ElastiCache allows at most five read replicas per shard.
MAX_REPLICAS: Final = 5


class ConnectionRegistry(Construct):
    """ElastiCache replication group for the connection registry, or an existing endpoint.

    :param vpc: VPC whose private subnets (the CDK default selection) hold the cache nodes.
    :param existing_url: use this ``redis://``/``rediss://`` endpoint; nothing is created and
        :attr:`security_group` is ``None``. Default: create a replication group.
    :param engine: ``valkey`` (default) or ``redis`` (Redis OSS).
    :param node_type: cache node type. Default ``cache.t4g.small``.
    :param replicas: read replicas of the primary, 1-5. Default 1 (Multi-AZ automatic failover needs
        at least one).
    :param port: port of the new replication group, 1024-65535. Default 6380.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        existing_url: str | None = None,
        engine: str = "valkey",
        node_type: str = "cache.t4g.small",
        replicas: int = 1,
        port: int = DEFAULT_PORT,
    ) -> None:
        super().__init__(scope, id_)
        self._security_group: ec2.SecurityGroup | None = None
        self._replication_group: elasticache.CfnReplicationGroup | None = None
        if existing_url is not None:
            self._url, self._address, self._port = _parse_existing(existing_url)
            return
        if engine not in ENGINES:
            raise ValueError(f"engine={engine!r} is not supported: use one of {', '.join(ENGINES)}")
        if not 1 <= replicas <= MAX_REPLICAS:
            raise ValueError(
                f"replicas={replicas} is outside 1-{MAX_REPLICAS}: Multi-AZ automatic failover needs at least "
                f"one replica and ElastiCache allows at most {MAX_REPLICAS}"
            )
        if not 1024 <= port <= 65535:
            raise ValueError(f"port={port} is outside 1024-65535: pick an unprivileged port such as {DEFAULT_PORT}")

        self._security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="stickyws connection registry: ingress only from the peers given to allow_from",
            allow_all_outbound=False,
        )
        subnets = vpc.select_subnets()
        subnet_group = elasticache.CfnSubnetGroup(
            self,
            "SubnetGroup",
            description="stickyws connection registry (private subnets)",
            subnet_ids=subnets.subnet_ids,
        )
        group = elasticache.CfnReplicationGroup(
            self,
            "ReplicationGroup",
            replication_group_description="stickyws connection registry",
            engine=engine,
            engine_version=ENGINE_VERSIONS[engine],
            cache_node_type=node_type,
            num_cache_clusters=replicas + 1,
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            at_rest_encryption_enabled=True,
            port=port,
            cache_subnet_group_name=subnet_group.ref,
            security_group_ids=[self._security_group.security_group_id],
        )
        acknowledge(
            group,
            "AwsSolutions-AEC6",
            "The registry holds routing keys and drain notices only; it is reachable solely from the "
            "security groups passed to allow_from, over TLS (transit encryption required).",
        )
        self._replication_group = group
        self._address = group.attr_primary_end_point_address
        self._port = port
        self._url = f"rediss://{self._address}:{port}"

    def allow_from(self, peer: ec2.IConnectable) -> None:
        """Admit ``peer`` (an ECS service, a Lambda function, a security group) on the registry port.

        For an existing endpoint this does nothing: its network rules belong to its owner.
        """
        if self._security_group is not None:
            self._security_group.connections.allow_from(peer, ec2.Port.tcp(self._port), "to the stickyws registry")

    @property
    def url(self) -> str:
        """``rediss://<primary endpoint>:<port>`` (a token for a new group), or ``existing_url`` as given."""
        return self._url

    @property
    def endpoint_address(self) -> str:
        """Host name of the primary endpoint (a token for a new group)."""
        return self._address

    @property
    def port(self) -> int:
        """Port of the registry."""
        return self._port

    @property
    def security_group(self) -> ec2.SecurityGroup | None:
        """The replication group's security group; ``None`` for an existing endpoint."""
        return self._security_group

    @property
    def replication_group(self) -> elasticache.CfnReplicationGroup | None:
        """The L1 replication group (an escape hatch); ``None`` for an existing endpoint."""
        return self._replication_group


def _parse_existing(url: str) -> tuple[str, str, int]:
    """``(url, host, port)`` of an existing endpoint URL.

    A token URL (a parameter, an import) is split at deploy time for the host; its port is not known
    at synth and is reported as 6379.
    """
    if Token.is_unresolved(url):
        host = Fn.select(0, Fn.split(":", Fn.select(2, Fn.split("/", url))))
        return url, host, 6379
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(
            f"existing_url={url!r} is not a redis:// or rediss:// URL with a host: pass e.g. rediss://host:6379"
        )
    return url, parts.hostname, parts.port or 6379
