"""The migration hook: a VPC Lambda that ECS calls after the production shift to move blue's open WebSockets.

:class:`MigrationHook` builds the function of :mod:`stickyws.migration_hook` (bundled without Docker like the
drain notifier's, :func:`constructs_lib.bundling.migration_hook_code`) and the lifecycle-hook target that
``WebSocketFargateService`` attaches to its service for a blue/green, linear or canary deployment (setting
``migration_hook``). ECS calls it at ``POST_PRODUCTION_TRAFFIC_SHIFT`` (move blue's clients to green) and at
``PRODUCTION_TRAFFIC_SHIFT`` (during a rollback only, green's back to blue); docs/deployments.md.

What the function gets:

* environment: the settings ``migration_pace_per_s``, ``migration_window_s``, ``drain_window_s`` and
  ``migration_done_connections`` under the names the model renders (``STICKYWS_<NAME>``, the names the
  handler reads), and ``REDIS_URL``; the registry's authentication variables (``REDIS_AUTH``, ...) come from
  ``ConnectionRegistry.connect_function(hook.function)``, exactly as for the drain notifier;
* network: the VPC's private subnets and its own security group, which the registry must admit
  (``registry.allow_from(hook.function)``);
* IAM: ``ecs:ListTasks`` on any container instance of the service's cluster only (condition ``ecs:cluster``:
  ListTasks has no narrower resource), ``ecs:DescribeTasks`` on that cluster's tasks, and, for the rollback
  check, ``ecs:ListServiceDeployments`` on the service and ``ecs:DescribeServiceDeployments`` on its
  deployments; ECS invokes the function with :attr:`MigrationHook.invoke_role` (``lambda:InvokeFunction`` on
  the function's unqualified ARN, the hook's target, and nothing else).
"""

from __future__ import annotations

from typing import Any, Final

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from constructs_lib.bundling import MIGRATION_HOOK_HANDLER, migration_hook_code
from constructs_lib.nag import acknowledge
from constructs_lib.registry_function import registry_function
from stickyws.settings import ENV_REDIS_URL, Settings, env_name, render_value

#: The settings the handler reads (as ``STICKYWS_<NAME>``; stickyws.migration_hook names the same variables).
HOOK_SETTINGS: Final = ("migration_pace_per_s", "migration_window_s", "drain_window_s", "migration_done_connections")
#: The stages ECS calls the hook at (stickyws.migration_hook.STAGES).
HOOK_STAGES: Final = (
    ecs.DeploymentLifecycleStage.POST_PRODUCTION_TRAFFIC_SHIFT,
    ecs.DeploymentLifecycleStage.PRODUCTION_TRAFFIC_SHIFT,
)
#: Function timeout. One call lists the service's tasks (pages of 100) and describes them in batches of 100,
#: each ECS call bounded by the handler's botocore timeouts (5 s connect, 15 s read, 3 attempts), then reads
#: the heartbeats and writes the due notices (3 s Redis timeouts). A function that times out counts as failed
#: and ECS rolls the deployment back, so the bound is generous: 5 minutes, a third of Lambda's 15.
FUNCTION_TIMEOUT: Final = Duration.minutes(5)
FUNCTION_MEMORY_MIB: Final = 256


def hook_environment(settings: Settings, registry_url: str) -> dict[str, str]:
    """The function's environment from ``settings``: the four migration variables and ``REDIS_URL``."""
    env = {env_name(name): render_value(settings[name]) for name in HOOK_SETTINGS}
    env[ENV_REDIS_URL] = registry_url
    return env


def nag_text(stack: Stack, value: str) -> str:
    """``value`` (a string that may hold tokens) as cdk-nag spells it in a finding's id: ``Ref`` as ``<Id>``,
    ``Fn::GetAtt`` as ``<Id.Attr>``, pseudo parameters as ``<AWS::Region>``, ``Fn::Join`` joined."""

    def text(node: Any) -> str:
        if isinstance(node, str):
            return node
        if isinstance(node, dict) and "Ref" in node:
            return f"<{node['Ref']}>"
        if isinstance(node, dict) and "Fn::GetAtt" in node:
            return f"<{'.'.join(node['Fn::GetAtt'])}>"
        if isinstance(node, dict) and "Fn::Join" in node:
            separator, parts = node["Fn::Join"]
            return str(separator).join(text(part) for part in parts)
        raise ValueError(f"cannot spell {node!r} as cdk-nag does")

    return text(stack.resolve(value))


class MigrationHook(Construct):
    """The migration-hook Lambda and its lifecycle-hook target (see the module docstring).

    :param vpc: VPC of the function (its private subnets, the CDK default selection).
    :param cluster: the service's cluster (the ECS permissions are scoped to it).
    :param service_name: the name of the ECS service whose deployments the hook moves (its deployments'
        permissions). A name, not the service: the service names the function as its hook, so a reference
        back to the service from the function's policy would close a dependency cycle.
    :param settings: the deployment's settings (pace, window, drain window, done threshold).
    :param registry_url: ``redis://`` or ``rediss://`` URL of the registry, given as ``REDIS_URL``.
    :param log_retention: retention of the function's log group. Default one month.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        cluster: ecs.ICluster,
        service_name: str,
        settings: Settings,
        registry_url: str,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, id_)
        self._function, self._security_group = registry_function(
            self,
            vpc=vpc,
            description="Moves blue's WebSocket clients to green after an ECS production traffic shift",
            security_group_description="stickyws migration hook Lambda: no ingress, egress to the registry and ECS",
            handler=MIGRATION_HOOK_HANDLER,
            code=migration_hook_code(),
            environment=hook_environment(settings, registry_url),
            timeout=FUNCTION_TIMEOUT,
            memory_mib=FUNCTION_MEMORY_MIB,
            log_retention=log_retention,
        )
        self._grant_ecs(cluster, service_name)
        # ECS calls the hook with this role; it may invoke the function's unqualified ARN, the hook's target.
        self._invoke_role = iam.Role(
            self,
            "InvokeRole",
            assumed_by=iam.ServicePrincipal("ecs.amazonaws.com"),
            description="ECS invokes the stickyws migration hook with this role during the service's deployments",
        )
        self._invoke_role.add_to_principal_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self._function.function_arn])
        )
        self._target = ecs.DeploymentLifecycleLambdaTarget(
            self._function, "MigrationHook", lifecycle_stages=list(HOOK_STAGES), role=self._invoke_role
        )

    def _grant_ecs(self, cluster: ecs.ICluster, service_name: str) -> None:
        stack = Stack.of(self)

        def arn(resource: str, name: str) -> str:
            return stack.format_arn(
                service="ecs", resource=resource, resource_name=name, arn_format=ArnFormat.SLASH_RESOURCE_NAME
            )

        tasks = arn("task", f"{cluster.cluster_name}/*")
        service = arn("service", f"{cluster.cluster_name}/{service_name}")
        deployments = arn("service-deployment", f"{cluster.cluster_name}/{service_name}/*")
        statements = [
            iam.PolicyStatement(
                actions=["ecs:ListTasks"],
                resources=["*"],
                conditions={"ArnEquals": {"ecs:cluster": cluster.cluster_arn}},
            ),
            iam.PolicyStatement(
                actions=["ecs:DescribeTasks"],
                resources=[tasks],
                conditions={"ArnEquals": {"ecs:cluster": cluster.cluster_arn}},
            ),
            iam.PolicyStatement(actions=["ecs:ListServiceDeployments"], resources=[service]),
            iam.PolicyStatement(actions=["ecs:DescribeServiceDeployments"], resources=[deployments]),
        ]
        for statement in statements:
            self._function.add_to_role_policy(statement)
        role = self._function.role
        if role is not None:
            acknowledge(
                role,
                "AwsSolutions-IAM5[Resource::*]",
                "ecs:ListTasks has no resource narrower than a container instance; its ecs:cluster condition limits "
                "it to the service's cluster.",
            )
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::{nag_text(stack, tasks)}]",
                "ecs:DescribeTasks on the tasks of the service's cluster: task ids are only known at run time.",
            )
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::{nag_text(stack, deployments)}]",
                "ecs:DescribeServiceDeployments on the service's own deployments, whose ids are known at run time "
                "only.",
            )

    @property
    def function(self) -> lambda_.Function:
        """The Lambda function (``stickyws.migration_hook.handler``); admit it on the registry and connect it."""
        return self._function

    @property
    def target(self) -> ecs.DeploymentLifecycleLambdaTarget:
        """The lifecycle-hook target at :data:`HOOK_STAGES` (``service.add_lifecycle_hook(hook.target)``)."""
        return self._target

    @property
    def invoke_role(self) -> iam.Role:
        """The role ECS invokes the function with (``lambda:InvokeFunction`` on the function only)."""
        return self._invoke_role

    @property
    def security_group(self) -> ec2.SecurityGroup:
        """The function's security group (admit it on the registry)."""
        return self._security_group
