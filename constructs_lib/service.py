"""The WebSocket server as an ECS Fargate service, configured from the one settings model.

:class:`WebSocketFargateService` creates (or reuses) the cluster, the task definition with the
``server`` container, the service and its autoscaling. What it renders, and where from:

* container environment: ``stickyws.settings.to_env(settings)`` (every ``STICKYWS_*`` setting;
  the server reads the same names with ``from_env``), ``REDIS_URL`` when a registry is given,
  ``STICKYWS_SERVICE_NAME`` (``stickyws.settings.ENV_SERVICE_NAME``: the service name, the
  ``ServiceName`` dimension of the server's metrics; Fargate's task metadata does not report it),
  then the caller's extra variables;
* ``STICKYWS_JWT_SECRET`` from Secrets Manager (``ecs.Secret``), never a literal;
* with ``publishers`` (or :meth:`WebSocketFargateService.allow_publish_from`): the HTTP publish
  endpoint's port (``publish_port``) mapped and opened to those security groups only, and its key
  ``STICKYWS_PUBLISH_KEY`` from Secrets Manager; the load balancer never routes that port;
* ``stopTimeout`` = ``stop_timeout_s``; health-check grace = ``health_check_grace_s``; deployment
  ``min_healthy_percent``/``max_percent`` (100/200: replacements come up before old tasks drain)
  with the circuit breaker rolling back;
* target tracking on the server's ``ActiveConnections`` per task (``target_connections_per_task``)
  and on CPU (``target_cpu_percent``), between ``min_count`` and ``max_count``, with the long
  ``scale_in_cooldown_s`` (every scale-in moves all clients of a task).

The service's security group has no ingress of its own: ``StickyWebSocketLoadBalancer.attach``
admits the load balancer's security group on the container port.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from aws_cdk import Duration, Names
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from constructs_lib.image import server_image
from constructs_lib.nag import acknowledge
from constructs_lib.observability import ACTIVE_CONNECTIONS, SERVICE_NAME_DIMENSION
from constructs_lib.settings_check import apply_settings
from stickyws.settings import (
    ENV_JWT_SECRET,
    ENV_PUBLISH_KEY,
    ENV_REDIS_URL,
    ENV_SERVICE_NAME,
    ENV_TARGET_GROUP_ARN,
    Settings,
    to_env,
)

#: Name of the server container in the task definition (the load balancer targets it).
CONTAINER_NAME: Final = "server"
#: Period over which the autoscaling and dashboard statistics of the server's metrics are taken.
METRIC_PERIOD: Final = Duration.minutes(1)
#: ECS container health-check limits (narrower than the ALB's for the timeout and start period).
ECS_HEALTH_TIMEOUT_MAX_S: Final = 60
ECS_HEALTH_START_PERIOD_MAX_S: Final = 300
#: Prefix of the container's log streams.
LOG_STREAM_PREFIX: Final = "stickyws"


def health_check_command(settings: Settings) -> list[str]:
    """The container health check: the Dockerfile's python urllib one-liner on the settings' port and path."""
    timeout_s = max(1, min(settings["health_check_timeout_s"], ECS_HEALTH_TIMEOUT_MAX_S) - 1)
    url = f"http://127.0.0.1:{settings['port']}{settings['health_check_path']}"
    script = (
        "import urllib.request,sys; "
        f"sys.exit(0 if urllib.request.urlopen({url!r}, timeout={timeout_s}).status == 200 else 1)"
    )
    return ["CMD", "python", "-c", script]


def container_environment(
    settings: Settings, *, service_name: str, redis_url: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The server container's environment: every setting, the registry URL, the service name, then ``extra``.

    Raises ``ValueError`` when ``extra`` would override a variable this construct renders (change
    the setting instead, or pass ``redis_url``).
    """
    env = to_env(settings)
    if redis_url is not None:
        env[ENV_REDIS_URL] = redis_url
    env[ENV_SERVICE_NAME] = service_name
    for name, value in (extra or {}).items():
        if name in env or name in (ENV_JWT_SECRET, ENV_PUBLISH_KEY):
            raise ValueError(
                f"environment variable {name} is rendered by WebSocketFargateService: change the setting, "
                "the redis_url or the jwt_secret instead of overriding it"
            )
        env[name] = value
    return env


class WebSocketFargateService(Construct):
    """Cluster, task definition, ``server`` container, Fargate service and autoscaling from :class:`Settings`.

    :param vpc: VPC of the service (and of a new cluster); tasks run in its private subnets (the
        CDK default selection) without public IPs.
    :param settings: the deployment's settings; checked with ``apply_settings`` (errors raise).
    :param cluster: reuse this cluster. Default: a new cluster with Container Insights.
    :param image: the container image. Default: :func:`constructs_lib.image.server_image`, an image
        asset (linux/amd64; synth only stages it) built by the repository's ``Dockerfile`` from a
        checkout, or by the packaged Dockerfile that installs this stickyws version with the
        ``[server]`` extra from the package index.
    :param jwt_secret: Secrets Manager secret whose whole string is the HS256 token signing key.
        Default: a generated 64-character secret.
    :param redis_url: registry URL given to the server as ``REDIS_URL``. Default: none (the server
        falls back to its in-memory registry, fit for one task only).
    :param log_retention: retention of the container log group. Default one month.
    :param environment: extra container variables; they may not override rendered ones.
    :param service_name: the ECS service name (also the metrics' ``ServiceName`` dimension, so it is
        fixed at synth). Default: a name unique to this construct's path in its stack. Up to 255
        letters, digits, hyphens and underscores.
    :param publishers: security groups of the backends that may call the publish endpoint
        (``POST /v1/publish`` on ``publish_port``). Default: none, and the endpoint stays off (no key
        is given to the server). Needs ``publish_port`` > 0.
    :param publish_key: Secrets Manager secret whose whole string is the publish endpoint's key.
        Default (with ``publishers``): a generated 48-character secret; read it with
        ``publish_key.grant_read(backend_role)``.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        settings: Settings,
        cluster: ecs.ICluster | None = None,
        image: ecs.ContainerImage | None = None,
        jwt_secret: secretsmanager.ISecret | None = None,
        redis_url: str | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        environment: Mapping[str, str] | None = None,
        service_name: str | None = None,
        publishers: Sequence[ec2.ISecurityGroup] = (),
        publish_key: secretsmanager.ISecret | None = None,
    ) -> None:
        super().__init__(scope, id_)
        if publishers and not settings["publish_port"]:
            raise ValueError("publishers need the publish endpoint: set publish_port to a port (e.g. 8081), not 0")
        self._publish_key: secretsmanager.ISecret | None = None
        apply_settings(self, settings)
        self._settings = settings
        self._describe_target_health_granted = False
        self._publish_mapped = False
        task = settings.task

        self._cluster: ecs.ICluster = cluster or ecs.Cluster(
            self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )
        self._service_name = service_name or Names.unique_resource_name(self, max_length=255, separator="-")

        if jwt_secret is None:
            generated = secretsmanager.Secret(
                self,
                "JwtSecret",
                description="HS256 signing key of stickyws connection tokens",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    password_length=64, exclude_punctuation=True
                ),
            )
            acknowledge(
                generated,
                "AwsSolutions-SMG4",
                "Rotating the token signing key invalidates every outstanding connection token; rotate it "
                "deliberately (a new secret version, then a deployment) rather than on a schedule.",
            )
            jwt_secret = generated
        self._jwt_secret = jwt_secret

        self._log_group = logs.LogGroup(self, "LogGroup", retention=log_retention)

        self._task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=int(task.task_cpu),
            memory_limit_mib=task.task_memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self._container = self._task_definition.add_container(
            CONTAINER_NAME,
            container_name=CONTAINER_NAME,
            image=image or server_image(),
            essential=True,
            port_mappings=[ecs.PortMapping(container_port=settings["port"], protocol=ecs.Protocol.TCP)],
            environment=container_environment(
                settings, service_name=self._service_name, redis_url=redis_url, extra=environment
            ),
            secrets={ENV_JWT_SECRET: ecs.Secret.from_secrets_manager(jwt_secret)},
            logging=ecs.LogDriver.aws_logs(stream_prefix=LOG_STREAM_PREFIX, log_group=self._log_group),
            stop_timeout=Duration.seconds(task.stop_timeout_s),
            health_check=ecs.HealthCheck(
                command=health_check_command(settings),
                interval=Duration.seconds(settings["health_check_interval_s"]),
                timeout=Duration.seconds(min(settings["health_check_timeout_s"], ECS_HEALTH_TIMEOUT_MAX_S)),
                retries=settings["unhealthy_threshold_count"],
                start_period=Duration.seconds(min(task.health_check_grace_s, ECS_HEALTH_START_PERIOD_MAX_S)),
            ),
        )
        acknowledge(
            self._task_definition,
            "AwsSolutions-ECS2",
            "The environment holds the non-secret settings (STICKYWS_*), the registry URL and the service "
            "name; the signing key is injected from Secrets Manager.",
        )

        self._security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="stickyws WebSocket tasks: ingress only from the load balancer (added by attach)",
            allow_all_outbound=True,
        )
        self._service = ecs.FargateService(
            self,
            "Service",
            cluster=self._cluster,
            task_definition=self._task_definition,
            service_name=self._service_name,
            desired_count=task.desired_count,
            min_healthy_percent=task.min_healthy_percent,
            max_healthy_percent=task.max_percent,
            health_check_grace_period=Duration.seconds(task.health_check_grace_s),
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            assign_public_ip=False,
            security_groups=[self._security_group],
        )
        if publish_key is not None:
            self._publish_key = publish_key
        for peer in publishers:
            self.allow_publish_from(peer)

        self._scaling = self._service.auto_scale_task_count(min_capacity=task.min_count, max_capacity=task.max_count)
        self._scaling.scale_to_track_custom_metric(
            "ConnectionsPerTask",
            metric=self.connections_metric,
            target_value=task.target_connections_per_task,
            scale_in_cooldown=Duration.seconds(task.scale_in_cooldown_s),
            scale_out_cooldown=Duration.seconds(task.scale_out_cooldown_s),
        )
        self._scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=task.target_cpu_percent,
            scale_in_cooldown=Duration.seconds(task.scale_in_cooldown_s),
            scale_out_cooldown=Duration.seconds(task.scale_out_cooldown_s),
        )
        execution_role = self._task_definition.execution_role
        if execution_role is not None and image is None:
            acknowledge(
                execution_role,
                "AwsSolutions-IAM5[Resource::*]",
                "ecr:GetAuthorizationToken, which pulling the image asset needs, has no resource-level permissions.",
            )

    def allow_publish_from(self, peer: ec2.ISecurityGroup) -> None:
        """Open the publish endpoint (``publish_port``) to ``peer`` only; the first call also maps the
        port and gives the server its key from Secrets Manager (generated unless one was passed)."""
        port = self._settings["publish_port"]
        if not port:
            raise ValueError("the publish endpoint is off (publish_port=0): set publish_port to a port first")
        if not self._publish_mapped:
            if self._publish_key is None:
                generated = secretsmanager.Secret(
                    self,
                    "PublishKey",
                    description="Key of the stickyws HTTP publish endpoint (POST /v1/publish)",
                    generate_secret_string=secretsmanager.SecretStringGenerator(
                        password_length=48, exclude_punctuation=True
                    ),
                )
                acknowledge(
                    generated,
                    "AwsSolutions-SMG4",
                    "Rotating the publish key needs every publishing backend to read the new version first; "
                    "rotate it deliberately, then deploy.",
                )
                self._publish_key = generated
            self._container.add_port_mappings(ecs.PortMapping(container_port=port, protocol=ecs.Protocol.TCP))
            self._container.add_secret(ENV_PUBLISH_KEY, ecs.Secret.from_secrets_manager(self._publish_key))
            self._publish_mapped = True
        self._security_group.add_ingress_rule(
            peer, ec2.Port.tcp(port), "stickyws publish endpoint (POST /v1/publish), never routed by the ALB"
        )

    @property
    def publish_key(self) -> secretsmanager.ISecret | None:
        """The publish endpoint's key (``None`` until a publisher is allowed)."""
        return self._publish_key

    def grant_describe_target_health(self, target_group: elbv2.ITargetGroup | None = None) -> None:
        """Let the tasks call ``elasticloadbalancing:DescribeTargetHealth`` (the server's optional drain trigger).

        With ``target_group`` the container also gets ``STICKYWS_TARGET_GROUP_ARN``, which the server's
        poller (``drain_poll_target_health=true``) needs to find its own target. Idempotent.
        """
        if not self._describe_target_health_granted:
            self._task_definition.task_role.add_to_principal_policy(
                iam.PolicyStatement(actions=["elasticloadbalancing:DescribeTargetHealth"], resources=["*"])
            )
            acknowledge(
                self._task_definition.task_role,
                "AwsSolutions-IAM5[Resource::*]",
                "elasticloadbalancing:DescribeTargetHealth supports no resource-level permissions.",
            )
            self._describe_target_health_granted = True
        if target_group is not None:
            self._container.add_environment(ENV_TARGET_GROUP_ARN, target_group.target_group_arn)

    def metric(self, metric_name: str, *, statistic: str = "Average") -> cloudwatch.Metric:
        """A server metric (``metrics_namespace``, dimension ``ServiceName``) over one minute."""
        return cloudwatch.Metric(
            namespace=self._settings["metrics_namespace"],
            metric_name=metric_name,
            dimensions_map={SERVICE_NAME_DIMENSION: self._service_name},
            statistic=statistic,
            period=METRIC_PERIOD,
        )

    @property
    def connections_metric(self) -> cloudwatch.Metric:
        """Average of ``ActiveConnections`` over the service's tasks: connections per task."""
        return self.metric(ACTIVE_CONNECTIONS)

    @property
    def cluster(self) -> ecs.ICluster:
        """The cluster (new or given)."""
        return self._cluster

    @property
    def service(self) -> ecs.FargateService:
        """The Fargate service."""
        return self._service

    @property
    def service_name(self) -> str:
        """The service name, fixed at synth (a literal unless one was passed as a token)."""
        return self._service_name

    @property
    def task_definition(self) -> ecs.FargateTaskDefinition:
        """The task definition."""
        return self._task_definition

    @property
    def container(self) -> ecs.ContainerDefinition:
        """The ``server`` container."""
        return self._container

    @property
    def security_group(self) -> ec2.SecurityGroup:
        """The tasks' security group (no ingress until the load balancer's ``attach``)."""
        return self._security_group

    @property
    def jwt_secret(self) -> secretsmanager.ISecret:
        """The token signing key's secret (given or generated)."""
        return self._jwt_secret

    @property
    def log_group(self) -> logs.LogGroup:
        """The container log group."""
        return self._log_group

    @property
    def scaling(self) -> ecs.ScalableTaskCount:
        """The service's scalable task count (two target-tracking policies)."""
        return self._scaling
