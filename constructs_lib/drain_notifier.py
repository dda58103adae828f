"""Tell a server that ECS has started to stop its task, long before SIGTERM.

ECS stops a service task in this order: (1) desired status STOPPED and deregistration from the
target group, (2) the load balancer drains the target for up to the deregistration delay and then
cuts what is still open, (3) SIGTERM, (4) SIGKILL after ``stopTimeout``. A server that drains on
SIGTERM has lost its sockets at the end of (2). EventBridge delivers the ECS "Task State Change"
event with ``desiredStatus: STOPPED`` at (1); :class:`DrainNotifier` routes the events of ONE
service to a small Lambda (``stickyws.drain_notifier.handler``) that stores and publishes a drain
notice on ``ws:drain:{taskId}`` in the connection registry.

Failure handling: the rule target and the function's asynchronous invocation both retry
(``retry_attempts``) and then send the event to one TLS-only SQS dead-letter queue, encrypted with a
customer-managed KMS key (rotated yearly) that only EventBridge (for this rule), the function's role
and the account's key administrators may use; the events name tasks and clusters of the service.
"""

from __future__ import annotations

from typing import Final

from aws_cdk import Aws, Duration, Names
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from constructs_lib.bundling import HANDLER, drain_notifier_code
from constructs_lib.registry_function import registry_function
from stickyws.settings import ENV_REDIS_URL

#: ``source`` and ``detail-type`` of the events the rule matches.
ECS_EVENT_SOURCE: Final = "aws.ecs"
TASK_STATE_CHANGE: Final = "ECS Task State Change"
#: Function timeout: the handler's Redis timeouts are 3 s, so 30 s covers connect, retry and EXEC.
FUNCTION_TIMEOUT: Final = Duration.seconds(30)
FUNCTION_MEMORY_MIB: Final = 256
#: Events older than this are not retried any more (a task is long gone by then).
MAX_EVENT_AGE: Final = Duration.hours(1)
#: How long the dead-letter queue keeps a failed event (the SQS maximum).
DLQ_RETENTION: Final = Duration.days(14)


def task_state_change_pattern(cluster: ecs.ICluster, service: ecs.BaseService) -> events.EventPattern:
    """Events of ``service``'s tasks in ``cluster`` whose desired status became STOPPED."""
    return events.EventPattern(
        source=[ECS_EVENT_SOURCE],
        detail_type=[TASK_STATE_CHANGE],
        detail={
            "clusterArn": [cluster.cluster_arn],
            "group": [f"service:{service.service_name}"],
            "desiredStatus": ["STOPPED"],
        },
    )


class DrainNotifier(Construct):
    """EventBridge rule on this service's stopping tasks -> VPC Lambda -> drain notice in the registry.

    :param vpc: VPC of the function; it runs in the VPC's private subnets (the CDK default
        selection) with its own security group, which the registry must admit
        (``registry.allow_from(notifier.function)``).
    :param cluster: the service's cluster (the rule matches its ARN).
    :param service: the ECS service whose tasks are watched (the rule matches ``service:<name>``).
    :param registry_url: ``redis://`` or ``rediss://`` URL of the registry, given to the function as
        ``REDIS_URL``.
    :param retry_attempts: retries of the rule target and of the function's asynchronous invocation
        before an event goes to the dead-letter queue. Range 0-2 (Lambda's limit). Default 2.
    :param log_retention: retention of the function's log group. Default one month.
    :param dlq_key: KMS key of the dead-letter queue. Default: a new customer-managed key with yearly
        rotation (about 1 USD a month).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        cluster: ecs.ICluster,
        service: ecs.BaseService,
        registry_url: str,
        retry_attempts: int = 2,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        dlq_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, id_)
        if not 0 <= retry_attempts <= 2:
            raise ValueError(f"retry_attempts={retry_attempts} is outside Lambda's range 0-2: pass 0, 1 or 2")

        self._dlq_key = dlq_key or kms.Key(
            self,
            "DeadLetterKey",
            description="stickyws drain notifier: encrypts the dead-letter queue of failed drain events",
            enable_key_rotation=True,
        )
        self._dlq = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self._dlq_key,
            enforce_ssl=True,
            retention_period=DLQ_RETENTION,
        )
        # cdk-nag's SQS3 (queue without a DLQ) recognises this queue as a dead-letter queue: nothing to acknowledge.

        self._function, self._security_group = registry_function(
            self,
            vpc=vpc,
            description="Publishes a stickyws drain notice when ECS starts to stop a service task",
            security_group_description="stickyws drain notifier Lambda: no ingress, egress to the connection registry",
            handler=HANDLER,
            code=drain_notifier_code(),
            environment={ENV_REDIS_URL: registry_url},
            timeout=FUNCTION_TIMEOUT,
            memory_mib=FUNCTION_MEMORY_MIB,
            log_retention=log_retention,
            retry_attempts=retry_attempts,
            max_event_age=MAX_EVENT_AGE,
            dead_letter_queue=self._dlq,
        )
        role = self._function.role
        if role is not None:
            # Lambda's own dead-letter grant is sqs:SendMessage only; a KMS-encrypted queue also needs the key.
            self._dlq_key.grant(role, "kms:GenerateDataKey", "kms:Decrypt")

        rule_name = Names.unique_resource_name(self, max_length=64, separator="-")
        self._rule = events.Rule(
            self,
            "TaskStoppingRule",
            rule_name=rule_name,
            description="ECS tasks of this service whose desired status became STOPPED (deregistration starts)",
            event_pattern=task_state_change_pattern(cluster, service),
            targets=[
                targets.LambdaFunction(
                    self._function,
                    dead_letter_queue=self._dlq,
                    retry_attempts=retry_attempts,
                    max_event_age=MAX_EVENT_AGE,
                )
            ],
        )
        # EventBridge writes failed events to the queue itself; with a KMS-encrypted queue it needs the key,
        # for this rule only. The ARN is spelled out from the fixed rule name: a reference to the rule would
        # close a cycle (key -> rule -> function -> role policy -> queue -> key).
        rule_arn = f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:rule/{rule_name}"
        self._dlq_key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions={"ArnEquals": {"aws:SourceArn": rule_arn}},
            )
        )

    @property
    def dead_letter_key(self) -> kms.IKey:
        """The KMS key that encrypts the dead-letter queue."""
        return self._dlq_key

    @property
    def function(self) -> lambda_.Function:
        """The Lambda function (``stickyws.drain_notifier.handler``)."""
        return self._function

    @property
    def rule(self) -> events.Rule:
        """The EventBridge rule on the service's task state changes."""
        return self._rule

    @property
    def dead_letter_queue(self) -> sqs.Queue:
        """Where events go that the rule could not deliver or the function failed on after retries."""
        return self._dlq

    @property
    def security_group(self) -> ec2.SecurityGroup:
        """The function's security group (admit it on the registry)."""
        return self._security_group
