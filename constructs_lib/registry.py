"""The connection registry: an ElastiCache (Valkey or Redis OSS) cache, or an existing endpoint.

The servers keep routing keys, sessions, heartbeats and drain notices there (key schema in
:mod:`stickyws.keys`). :class:`ConnectionRegistry` creates one of three shapes, chosen by the
``registry_mode`` setting:

``single``
    A replication group with cluster mode disabled: one shard, a primary and
    ``registry_replicas_per_shard`` replicas; clients use the primary endpoint.
``cluster``
    A replication group with cluster mode enabled: ``registry_shards`` shards of a primary and
    ``registry_replicas_per_shard`` replicas each (the ``default.<engine><major>.cluster.on``
    parameter group); clients use the configuration endpoint.
``serverless``
    An ElastiCache Serverless cache (always cluster mode, replicated across availability zones by
    the service) with the ``registry_serverless_*`` usage limits; clients use its endpoint (port 6379).

Every node-based shape runs Multi-AZ with automatic failover, encryption in transit (TLS required,
hence ``rediss://``) and at rest, in the VPC's private subnets; Serverless always encrypts both.
A security group admits only the peers passed to :meth:`ConnectionRegistry.allow_from`.

Authentication (``registry_auth``) is ElastiCache RBAC: a user group holding a disabled ``default``
user and one application user, shared by the service and the drain notifier:

``iam``
    the user authenticates with IAM; a client presents a 15-minute SigV4 token signed with its role
    (:mod:`stickyws.registry_auth`), and :meth:`grant_connect` allows ``elasticache:Connect`` on the
    cache and the user;
``token``
    the user's password is generated in Secrets Manager (``{"username", "password"}``); the service
    gets it as an ECS secret, the Lambda reads it by ARN, and :meth:`grant_connect` allows reading it;
``none``
    no user group: any client the security group admits may read and write (a settings warning).

:meth:`connect_container` and :meth:`connect_function` give a container or a Lambda function the
environment (``REDIS_AUTH``, ``REDIS_USER``, ...) and the grants it needs. Or the construct wraps an
existing endpoint (``existing_url``): no resources, auth ``none`` (credentials in the URL apply), and
reaching that endpoint is the owner's business.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

from aws_cdk import Aws, Fn, Names, Token
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from constructs_lib.nag import acknowledge
from constructs_lib.settings_check import apply_settings
from stickyws.settings import (
    ENV_REDIS_AUTH,
    ENV_REDIS_IAM_CACHE_NAME,
    ENV_REDIS_IAM_SERVERLESS,
    ENV_REDIS_PASSWORD,
    ENV_REDIS_PASSWORD_SECRET_ARN,
    ENV_REDIS_USER,
    Scope,
    Settings,
)
from stickyws.settings.model import REGISTRY_AUTH_MODES, REGISTRY_ENGINES, REGISTRY_MODES
from stickyws.settings.rules import DEFAULT_ENGINE_VERSIONS

ENGINES: Final = REGISTRY_ENGINES
#: Engine versions the replication group is pinned to (major.minor, as ElastiCache takes them).
ENGINE_VERSIONS: Final = DEFAULT_ENGINE_VERSIONS
#: The parts the registry's rules read: the registry, and the service and server it serves (rules about
#: the registry only, see ``apply_settings(about=Scope.REGISTRY)``).
REGISTRY_PARTS: Final = frozenset({Scope.REGISTRY, Scope.SERVICE, Scope.SERVER})
#: Port of a new replication group. Not the well-known 6379 (cdk-nag AwsSolutions-AEC5).
DEFAULT_PORT: Final = 6380
#: Port of a Serverless cache's endpoint (fixed by the service).
SERVERLESS_PORT: Final = 6379
#: ElastiCache allows at most five read replicas per shard and 500 shards.
MAX_REPLICAS: Final = 5
MAX_SHARDS: Final = 500
#: RBAC access string of the application user: every key, every channel, every command.
APP_ACCESS_STRING: Final = "on ~* &* +@all"
#: The ``default`` user every user group must contain, switched off.
DEFAULT_USER_ACCESS_STRING: Final = "off -@all"


class ConnectionRegistry(Construct):
    """ElastiCache registry (single primary, cluster mode or Serverless) with RBAC, or an existing endpoint.

    :param vpc: VPC whose private subnets (the CDK default selection) hold the cache.
    :param settings: the deployment's settings; the ``registry_*`` group chooses mode, engine,
        version, shards, replicas, node type, auth and Serverless limits. Default ``Settings()``.
    :param existing_url: use this ``redis://``/``rediss://`` endpoint; nothing is created,
        :attr:`security_group` is ``None`` and :attr:`auth` is ``none``. Default: create a cache.
    :param engine: overrides ``registry_engine``: ``valkey`` or ``redis`` (Redis OSS).
    :param node_type: overrides ``registry_node_type``. Default ``cache.t4g.small``.
    :param replicas: overrides ``registry_replicas_per_shard``, 1-5 for node-based modes (Multi-AZ
        automatic failover needs at least one).
    :param port: port of a node-based cache, 1024-65535. Default 6380 (Serverless: always 6379).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        settings: Settings | None = None,
        existing_url: str | None = None,
        engine: str | None = None,
        node_type: str | None = None,
        replicas: int | None = None,
        port: int = DEFAULT_PORT,
    ) -> None:
        super().__init__(scope, id_)
        settings = settings or Settings()
        self._verdict = apply_settings(self, settings, REGISTRY_PARTS, about=Scope.REGISTRY)
        r = settings.registry
        self._security_group: ec2.SecurityGroup | None = None
        self._replication_group: elasticache.CfnReplicationGroup | None = None
        self._serverless_cache: elasticache.CfnServerlessCache | None = None
        self._user_group: elasticache.CfnUserGroup | None = None
        self._password_secret: secretsmanager.Secret | None = None
        self._user_id: str | None = None
        self._cache_name = ""
        self._cache_arn = ""
        if existing_url is not None:
            self._mode, self._auth = "existing", "none"
            self._url, self._address, self._port = _parse_existing(existing_url)
            return
        engine = engine if engine is not None else r.registry_engine
        node_type = node_type if node_type is not None else r.registry_node_type
        replicas = replicas if replicas is not None else r.registry_replicas_per_shard
        self._mode, self._auth = r.registry_mode, r.registry_auth
        if engine not in ENGINES:
            raise ValueError(f"engine={engine!r} is not supported: use one of {', '.join(ENGINES)}")
        if self._mode not in REGISTRY_MODES or self._auth not in REGISTRY_AUTH_MODES:
            raise ValueError(f"registry_mode={self._mode!r} / registry_auth={self._auth!r} are not supported")
        if self._mode != "serverless" and not 1 <= replicas <= MAX_REPLICAS:
            raise ValueError(
                f"replicas={replicas} is outside 1-{MAX_REPLICAS}: Multi-AZ automatic failover needs at least "
                f"one replica and ElastiCache allows at most {MAX_REPLICAS}"
            )
        if not 1024 <= port <= 65535:
            raise ValueError(f"port={port} is outside 1024-65535: pick an unprivileged port such as {DEFAULT_PORT}")
        version = r.registry_engine_version or ENGINE_VERSIONS[engine]
        self._port = SERVERLESS_PORT if self._mode == "serverless" else port

        self._security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="stickyws connection registry: ingress only from the peers given to allow_from",
            allow_all_outbound=False,
        )
        base = _name_base(self)
        if self._auth != "none":
            self._user_group = self._users(base, engine)
        subnets = vpc.select_subnets()
        if self._mode == "serverless":
            self._serverless(base, engine, version, subnets.subnet_ids, settings)
        else:
            self._node_based(engine, version, node_type, replicas, r.registry_shards, subnets.subnet_ids)

    # -- resources ---------------------------------------------------------------------------------

    def _users(self, base: str, engine: str) -> elasticache.CfnUserGroup:
        """A user group with the ``default`` user switched off and the application user (IAM or password)."""
        self._user_id = f"{base}-app"
        default_user = elasticache.CfnUser(
            self,
            "DefaultUser",
            engine=engine,
            user_id=f"{base}-off",
            user_name="default",
            access_string=DEFAULT_USER_ACCESS_STRING,
            no_password_required=True,
        )
        if self._auth == "iam":
            mode: dict[str, object] = {"Type": "iam"}
        else:
            self._password_secret = secretsmanager.Secret(
                self,
                "Password",
                description="Password of the stickyws connection registry's RBAC user",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    secret_string_template=f'{{"username": "{self._user_id}"}}',
                    generate_string_key="password",
                    password_length=64,
                    exclude_punctuation=True,
                ),
            )
            acknowledge(
                self._password_secret,
                "AwsSolutions-SMG4",
                "The RBAC user's password must change on the ElastiCache user and in the secret together; "
                "rotate it deliberately (update the secret, then deploy) or use registry_auth=iam, whose "
                "tokens expire after 15 minutes.",
            )
            password = self._password_secret.secret_value_from_json("password").unsafe_unwrap()
            mode = {"Type": "password", "Passwords": [password]}
        app_user = elasticache.CfnUser(
            self,
            "AppUser",
            engine=engine,
            user_id=self._user_id,
            user_name=self._user_id,  # IAM authentication needs user name == user id
            access_string=APP_ACCESS_STRING,
            authentication_mode=mode,
        )
        group = elasticache.CfnUserGroup(
            self, "UserGroup", engine=engine, user_group_id=f"{base}-users", user_ids=[f"{base}-off", self._user_id]
        )
        group.add_resource_dependency(default_user)
        group.add_resource_dependency(app_user)
        return group

    def _node_based(
        self, engine: str, version: str, node_type: str, replicas: int, shards: int, subnet_ids: list[str]
    ) -> None:
        subnet_group = elasticache.CfnSubnetGroup(
            self,
            "SubnetGroup",
            description="stickyws connection registry (private subnets)",
            subnet_ids=subnet_ids,
        )
        cluster = self._mode == "cluster"
        if cluster and not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"registry_shards={shards} is outside 1-{MAX_SHARDS}")
        topology: dict[str, object] = (
            {
                "num_node_groups": shards,
                "replicas_per_node_group": replicas,
                "cluster_mode": "enabled",
                "cache_parameter_group_name": f"default.{engine}{version.split('.')[0]}.cluster.on",
            }
            if cluster
            else {"num_cache_clusters": replicas + 1}
        )
        group = elasticache.CfnReplicationGroup(
            self,
            "ReplicationGroup",
            replication_group_description="stickyws connection registry",
            engine=engine,
            engine_version=version,
            cache_node_type=node_type,
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            at_rest_encryption_enabled=True,
            port=self._port,
            cache_subnet_group_name=subnet_group.ref,
            security_group_ids=[self._security_group_id],
            user_group_ids=[self._user_group.user_group_id] if self._user_group is not None else None,
            **topology,  # type: ignore[arg-type]
        )
        if self._user_group is not None:
            group.add_resource_dependency(self._user_group)
        acknowledge(group, "AwsSolutions-AEC6", self._aec6_reason())
        self._replication_group = group
        self._address = group.attr_configuration_end_point_address if cluster else group.attr_primary_end_point_address
        self._cache_name = group.ref
        self._cache_arn = f"arn:{Aws.PARTITION}:elasticache:{Aws.REGION}:{Aws.ACCOUNT_ID}:replicationgroup:{group.ref}"
        self._url = f"rediss://{self._address}:{self._port}"

    def _serverless(self, base: str, engine: str, version: str, subnet_ids: list[str], settings: Settings) -> None:
        r = settings.registry
        cache = elasticache.CfnServerlessCache(
            self,
            "ServerlessCache",
            serverless_cache_name=f"{base}-cache",
            description="stickyws connection registry",
            engine=engine,
            major_engine_version=version.split(".")[0],
            subnet_ids=subnet_ids,
            security_group_ids=[self._security_group_id],
            user_group_id=self._user_group.user_group_id if self._user_group is not None else None,
            cache_usage_limits=elasticache.CfnServerlessCache.CacheUsageLimitsProperty(
                data_storage=elasticache.CfnServerlessCache.DataStorageProperty(
                    unit="GB", maximum=r.registry_serverless_max_data_gb
                ),
                ecpu_per_second=elasticache.CfnServerlessCache.ECPUPerSecondProperty(
                    maximum=r.registry_serverless_max_ecpu_per_s
                ),
            ),
        )
        if self._user_group is not None:
            cache.add_resource_dependency(self._user_group)
        self._serverless_cache = cache
        self._address = cache.attr_endpoint_address
        self._cache_name = f"{base}-cache"
        self._cache_arn = cache.attr_arn
        self._url = f"rediss://{self._address}:{self._port}"

    def _aec6_reason(self) -> str:
        if self._auth == "none":
            return (
                "registry_auth=none was chosen (the settings rule registry-auth warns about it): the registry is "
                "reachable solely from the security groups passed to allow_from, over TLS."
            )
        return (
            f"Clients authenticate with ElastiCache RBAC (user group with an {self._auth.upper()} user; the default "
            "user is off), which replaces the single AUTH token this rule looks for."
        )

    @property
    def _security_group_id(self) -> str:
        assert self._security_group is not None
        return self._security_group.security_group_id

    # -- wiring ------------------------------------------------------------------------------------

    def skipped_rules(self) -> list[str]:
        """``rule-id: reason`` of each registry rule this construct did not judge (see ``apply_settings``)."""
        return self._verdict.skipped_rules()

    def allow_from(self, peer: ec2.IConnectable) -> None:
        """Admit ``peer`` (an ECS service, a Lambda function, a security group) on the registry port.

        For an existing endpoint this does nothing: its network rules belong to its owner.
        """
        if self._security_group is not None:
            self._security_group.connections.allow_from(peer, ec2.Port.tcp(self._port), "to the stickyws registry")

    def client_environment(self, *, password_by_arn: bool = False) -> dict[str, str]:
        """What a client needs to authenticate (names from :mod:`stickyws.settings.codec`).

        ``iam``: ``REDIS_AUTH``, ``REDIS_USER``, ``REDIS_IAM_CACHE_NAME``, ``REDIS_IAM_SERVERLESS``;
        ``token``: ``REDIS_AUTH``, ``REDIS_USER`` and, with ``password_by_arn``,
        ``REDIS_PASSWORD_SECRET_ARN`` (otherwise the password comes as an ECS secret); ``none``:
        ``REDIS_AUTH=none``, or nothing for an existing endpoint.
        """
        if self._mode == "existing":
            return {}
        env = {ENV_REDIS_AUTH: self._auth}
        if self._auth == "iam":
            assert self._user_id is not None
            env[ENV_REDIS_USER] = self._user_id
            env[ENV_REDIS_IAM_CACHE_NAME] = self._cache_name
            env[ENV_REDIS_IAM_SERVERLESS] = "true" if self._mode == "serverless" else "false"
        elif self._auth == "token":
            assert self._user_id is not None
            assert self._password_secret is not None
            env[ENV_REDIS_USER] = self._user_id
            if password_by_arn:
                env[ENV_REDIS_PASSWORD_SECRET_ARN] = self._password_secret.secret_arn
        return env

    def grant_connect(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` authenticate: ``elasticache:Connect`` on the cache and the user (iam), or read the
        password secret (token); nothing for ``none`` or an existing endpoint."""
        if self._auth == "iam":
            assert self._user_id is not None
            user_arn = f"arn:{Aws.PARTITION}:elasticache:{Aws.REGION}:{Aws.ACCOUNT_ID}:user:{self._user_id}"
            iam.Grant.add_to_principal(
                grantee=grantee, actions=["elasticache:Connect"], resource_arns=[self._cache_arn, user_arn]
            )
        elif self._auth == "token" and self._password_secret is not None:
            self._password_secret.grant_read(grantee)

    def connect_container(self, container: ecs.ContainerDefinition) -> None:
        """Give a server container the auth environment (the password as an ECS secret) and grant its task role."""
        for name, value in self.client_environment().items():
            container.add_environment(name, value)
        if self._password_secret is not None:
            container.add_secret(ENV_REDIS_PASSWORD, ecs.Secret.from_secrets_manager(self._password_secret, "password"))
        self.grant_connect(container.task_definition.task_role)

    def connect_function(self, function: lambda_.Function) -> None:
        """Give a Lambda function the auth environment (the password by secret ARN) and grant its role."""
        for name, value in self.client_environment(password_by_arn=True).items():
            function.add_environment(name, value)
        self.grant_connect(function)

    # -- what clients and stacks read --------------------------------------------------------------

    @property
    def url(self) -> str:
        """``rediss://<endpoint>:<port>`` (primary, configuration or Serverless endpoint; a token for a new
        cache), or ``existing_url`` as given."""
        return self._url

    @property
    def endpoint_address(self) -> str:
        """Host name of the endpoint clients use (a token for a new cache)."""
        return self._address

    @property
    def port(self) -> int:
        """Port of the registry."""
        return self._port

    @property
    def mode(self) -> str:
        """``single``, ``cluster``, ``serverless``, or ``existing`` for an existing endpoint."""
        return self._mode

    @property
    def auth(self) -> str:
        """``iam``, ``token`` or ``none``."""
        return self._auth

    @property
    def user_id(self) -> str | None:
        """The RBAC application user's id (also its name); ``None`` without auth."""
        return self._user_id

    @property
    def password_secret(self) -> secretsmanager.Secret | None:
        """The Secrets Manager secret with the user's password (``token`` mode); else ``None``."""
        return self._password_secret

    @property
    def security_group(self) -> ec2.SecurityGroup | None:
        """The cache's security group; ``None`` for an existing endpoint."""
        return self._security_group

    @property
    def replication_group(self) -> elasticache.CfnReplicationGroup | None:
        """The L1 replication group (``single``/``cluster``; an escape hatch); else ``None``."""
        return self._replication_group

    @property
    def serverless_cache(self) -> elasticache.CfnServerlessCache | None:
        """The L1 Serverless cache (``serverless``); else ``None``."""
        return self._serverless_cache

    @property
    def user_group(self) -> elasticache.CfnUserGroup | None:
        """The RBAC user group (``iam``/``token``); else ``None``."""
        return self._user_group


def _name_base(scope: Construct) -> str:
    """A lowercase name unique to ``scope`` in its account and region, valid for ElastiCache ids (<= 30 chars).

    ElastiCache user, user group and Serverless cache ids are 1-40 letters, digits and single hyphens,
    starting with a letter; suffixes such as ``-users`` are appended to this base.
    """
    raw = re.sub(r"[^a-z0-9]", "", Names.unique_id(scope).lower())
    base = raw[-30:] if len(raw) > 30 else raw
    return base if base[:1].isalpha() else f"r{base[-29:]}"


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
