"""The Lambda function the registry's writers share: the drain notifier and the migration hook.

Both run in the VPC next to the registry, with a security group of their own (no ingress, egress to
the registry and AWS APIs), a log group with a retention, the bundled runtime of
:mod:`constructs_lib.bundling` on ARM, and the same cdk-nag acknowledgements (the AWS-managed
logging and VPC policies, the runtime pinned in one place). :func:`registry_function` makes them as
children ``SecurityGroup``, ``LogGroup`` and ``Function`` of the caller.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from constructs_lib.bundling import LAMBDA_RUNTIME
from constructs_lib.nag import acknowledge

#: The AWS-managed policies Lambda attaches to a function's role for logs and VPC access.
MANAGED_POLICIES = ("AWSLambdaBasicExecutionRole", "AWSLambdaVPCAccessExecutionRole")


def registry_function(
    scope: Construct,
    *,
    vpc: ec2.IVpc,
    description: str,
    security_group_description: str,
    handler: str,
    code: lambda_.Code,
    environment: dict[str, str],
    timeout: Duration,
    memory_mib: int,
    log_retention: logs.RetentionDays,
    **function_props: Any,
) -> tuple[lambda_.Function, ec2.SecurityGroup]:
    """The function and its security group (``function_props`` go to :class:`aws_lambda.Function` as they are)."""
    security_group = ec2.SecurityGroup(
        scope, "SecurityGroup", vpc=vpc, description=security_group_description, allow_all_outbound=True
    )
    log_group = logs.LogGroup(scope, "LogGroup", retention=log_retention)
    function = lambda_.Function(
        scope,
        "Function",
        description=description,
        runtime=LAMBDA_RUNTIME,
        architecture=lambda_.Architecture.ARM_64,
        handler=handler,
        code=code,
        timeout=timeout,
        memory_size=memory_mib,
        vpc=vpc,
        security_groups=[security_group],
        environment=environment,
        log_group=log_group,
        **function_props,
    )
    role = function.role
    if role is not None:
        for policy in MANAGED_POLICIES:
            acknowledge(
                role,
                f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/{policy}]",
                f"{policy} is the AWS-maintained minimum for a Lambda function that logs and runs in a VPC.",
            )
    acknowledge(
        function,
        "AwsSolutions-L1",
        f"{LAMBDA_RUNTIME.name} is the runtime this handler and its bundled redis-py are tested for; "
        "the runtime is one constant in constructs_lib/bundling.py.",
    )
    return function, security_group
