"""What the service's task count follows: target-tracking policies on signals the deployment has.

A :class:`ScalingSignal` names one target-tracking policy of ``WebSocketFargateService(scaling=...)``.
All policies keep the task count between ``min_count`` and ``max_count`` with the settings'
``scale_in_cooldown_s`` (long: every scale-in moves all clients of a task) and
``scale_out_cooldown_s``; with several, ECS scales out on any of them and in only when all agree.

=============================  =====================================================  ==================
signal                         metric                                                 needs
=============================  =====================================================  ==================
``cpu()``                      ``ECSServiceAverageCPUUtilization``                    nothing
``memory(p)``                  ``ECSServiceAverageMemoryUtilization``                 nothing
``server_connections()``       the reference server's ``ActiveConnections`` per task  the reference server
``requests_per_target(n)``     ``ALBRequestCountPerTarget`` (upgrades and other       the target group
                               requests per target per minute)
``connections_per_target()``   ALB ``ActiveConnectionCount`` / 2 / the target         the load balancer and
                               group's ``HealthyHostCount`` (metric math)             the target group
``metric(m, target)``          your CloudWatch metric or math expression              your metric
=============================  =====================================================  ==================

Defaults: the reference server scales on ``server_connections()`` and ``cpu()``; your own server
(``server_mode=own``) on ``cpu()`` only, since it emits no ``ActiveConnections``.

``requests_per_target``: a WebSocket is one request (its upgrade) for its whole life, so this
follows the rate of new connections, not how many are open. ``connections_per_target`` follows
open connections without any help from the server: ``ActiveConnectionCount`` (statistic ``Sum``,
dimension ``LoadBalancer``) counts each proxied WebSocket twice, client to load balancer and load
balancer to target, so it is halved, then divided by the healthy targets. It assumes the load
balancer carries this service only (other traffic on it counts too). aws-cdk-lib's
``TargetTrackingScalingPolicy`` takes direct metrics only, so math expressions are rendered as a
``AWS::ApplicationAutoScaling::ScalingPolicy`` whose ``CustomizedMetricSpecification.Metrics`` holds
the expression and its metrics (CloudFormation supports metric math in target tracking).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from aws_cdk import Duration, Names
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from constructs import Construct

from stickyws.settings import Settings

SignalKind = Literal["cpu", "memory", "server_connections", "requests_per_target", "connections_per_target", "metric"]

#: Construct id of each policy (the reference service's two keep their ids, so their logical ids hold).
POLICY_IDS: Final[dict[str, str]] = {
    "cpu": "Cpu",
    "memory": "Memory",
    "server_connections": "ConnectionsPerTask",
    "requests_per_target": "RequestsPerTarget",
    "connections_per_target": "ConnectionsPerTarget",
}
#: Period of the load balancer metrics in the connections-per-target expression.
ALB_METRIC_PERIOD: Final = Duration.minutes(1)
#: Each proxied WebSocket is two TCP connections in ``ActiveConnectionCount``.
CONNECTIONS_PER_WEBSOCKET: Final = 2


@dataclass(frozen=True)
class ScalingSignal:
    """One target-tracking policy of the service; build it with a class method (see the module doc)."""

    kind: SignalKind
    target: float | None = None
    custom_metric: cloudwatch.IMetric | None = None
    name: str = ""

    # -- signals ---------------------------------------------------------------------------------

    @classmethod
    def cpu(cls, target_percent: float | None = None) -> ScalingSignal:
        """Average CPU of the service's tasks. Default target: ``target_cpu_percent``."""
        return cls("cpu", _percent(target_percent, "cpu"))

    @classmethod
    def memory(cls, target_percent: float) -> ScalingSignal:
        """Average memory use of the service's tasks, kept at ``target_percent`` (1-100)."""
        return cls("memory", _percent(target_percent, "memory"))

    @classmethod
    def server_connections(cls, per_task: int | None = None) -> ScalingSignal:
        """The reference server's ``ActiveConnections`` metric per task. Default: ``target_connections_per_task``.

        Only the reference server emits it; with ``server_mode=own`` the service refuses this signal.
        """
        return cls("server_connections", _positive(per_task, "server_connections"))

    @classmethod
    def requests_per_target(cls, requests_per_minute: int) -> ScalingSignal:
        """``ALBRequestCountPerTarget``: requests (a WebSocket is one, its upgrade) per target per minute.

        Needs the target group: wired by ``StickyWebSocketLoadBalancer.attach``, or pass
        ``target_group=`` to the service.
        """
        return cls("requests_per_target", _positive(requests_per_minute, "requests_per_target", required=True))

    @classmethod
    def connections_per_target(cls, per_target: int | None = None) -> ScalingSignal:
        """Open WebSockets per healthy target, from the load balancer's own metrics (see the module doc).

        Default target: ``target_connections_per_task``. Needs the load balancer and the target group
        (wired like :meth:`requests_per_target`).
        """
        return cls("connections_per_target", _positive(per_target, "connections_per_target"))

    @classmethod
    def metric(cls, metric: cloudwatch.IMetric, target_value: float, *, name: str = "Custom") -> ScalingSignal:
        """Your metric (``cloudwatch.Metric``) or math expression (``cloudwatch.MathExpression``) kept at
        ``target_value``; it must fall when tasks are added. ``name`` (letters and digits) names the policy."""
        if not name.isalnum():
            raise ValueError(f"scaling metric name {name!r}: use letters and digits only, e.g. QueueDepth")
        if target_value <= 0:
            raise ValueError(f"scaling metric target_value={target_value} must be above 0")
        return cls("metric", float(target_value), metric, name)

    # -- rendering -------------------------------------------------------------------------------

    @classmethod
    def defaults_for(cls, settings: Settings) -> tuple[ScalingSignal, ...]:
        """Reference server: ``server_connections()`` and ``cpu()``; your own server: ``cpu()``."""
        return (cls.cpu(),) if settings.own_server else (cls.server_connections(), cls.cpu())

    @property
    def needs_target_group(self) -> bool:
        """Whether the policy can only be made once the load balancer's target group is known."""
        return self.kind in ("requests_per_target", "connections_per_target")

    @property
    def policy_id(self) -> str:
        """Construct id of the policy under the scalable task count."""
        return POLICY_IDS.get(self.kind) or f"Metric{self.name}"

    def describe(self) -> str:
        """Short text for messages, e.g. ``requests_per_target(1000)``."""
        return f"{self.kind}({'' if self.target is None else f'{self.target:g}'})"

    def add_to(
        self,
        scaling: ecs.ScalableTaskCount,
        settings: Settings,
        *,
        connections_metric: cloudwatch.IMetric | None = None,
        target_group: elbv2.IApplicationTargetGroup | None = None,
        load_balancer: elbv2.IApplicationLoadBalancer | None = None,
    ) -> None:
        """Add this signal's target-tracking policy to ``scaling``.

        ``connections_metric`` is the server's per-task metric (for :meth:`server_connections`);
        ``target_group`` and ``load_balancer`` feed the load-balancer signals.
        """
        task = settings.task
        cool_in, cool_out = Duration.seconds(task.scale_in_cooldown_s), Duration.seconds(task.scale_out_cooldown_s)
        if self.kind == "cpu":
            target = self.target if self.target is not None else task.target_cpu_percent
            scaling.scale_on_cpu_utilization(
                self.policy_id,
                target_utilization_percent=target,
                scale_in_cooldown=cool_in,
                scale_out_cooldown=cool_out,
            )
        elif self.kind == "memory":
            assert self.target is not None
            scaling.scale_on_memory_utilization(
                self.policy_id,
                target_utilization_percent=self.target,
                scale_in_cooldown=cool_in,
                scale_out_cooldown=cool_out,
            )
        elif self.kind == "server_connections":
            if connections_metric is None:
                raise ValueError("server_connections scaling needs the server's ActiveConnections metric")
            scaling.scale_to_track_custom_metric(
                self.policy_id,
                metric=connections_metric,
                target_value=self.target if self.target is not None else task.target_connections_per_task,
                scale_in_cooldown=cool_in,
                scale_out_cooldown=cool_out,
            )
        elif self.kind == "requests_per_target":
            if not isinstance(target_group, elbv2.ApplicationTargetGroup):
                raise ValueError(
                    "requests_per_target scaling needs the load balancer's target group (an ApplicationTargetGroup "
                    "made in this app): attach the service with StickyWebSocketLoadBalancer.attach(service), or "
                    "pass target_group="
                )
            assert self.target is not None
            scaling.scale_on_request_count(
                self.policy_id,
                requests_per_target=int(self.target),
                target_group=target_group,
                scale_in_cooldown=cool_in,
                scale_out_cooldown=cool_out,
            )
        elif self.kind == "connections_per_target":
            if target_group is None or load_balancer is None:
                raise ValueError(
                    "connections_per_target scaling needs the load balancer and its target group: attach the "
                    "service with StickyWebSocketLoadBalancer.attach(service), or pass target_group= and load_balancer="
                )
            per_target = self.target if self.target is not None else task.target_connections_per_task
            expression = connections_per_target_expression(load_balancer, target_group)
            track_expression(scaling, self.policy_id, expression, per_target, settings)
        else:
            assert self.custom_metric is not None
            assert self.target is not None
            if isinstance(self.custom_metric, cloudwatch.MathExpression):
                track_expression(scaling, self.policy_id, self.custom_metric, self.target, settings)
            else:
                scaling.scale_to_track_custom_metric(
                    self.policy_id,
                    metric=self.custom_metric,
                    target_value=self.target,
                    scale_in_cooldown=cool_in,
                    scale_out_cooldown=cool_out,
                )


def connections_per_target_expression(
    load_balancer: elbv2.IApplicationLoadBalancer, target_group: elbv2.IApplicationTargetGroup
) -> cloudwatch.MathExpression:
    """Open WebSockets per healthy target: ``ActiveConnectionCount (Sum) / 2 / HealthyHostCount (Average)``."""
    active = load_balancer.metrics.active_connection_count(statistic="Sum", period=ALB_METRIC_PERIOD)
    healthy = target_group.metrics.healthy_host_count(statistic="Average", period=ALB_METRIC_PERIOD)
    return cloudwatch.MathExpression(
        expression=f"active / {CONNECTIONS_PER_WEBSOCKET} / healthy",
        using_metrics={"active": active, "healthy": healthy},
        label="WebSockets per healthy target",
        period=ALB_METRIC_PERIOD,
    )


def track_expression(
    scaling: ecs.ScalableTaskCount,
    policy_id: str,
    expression: cloudwatch.MathExpression,
    target_value: float,
    settings: Settings,
) -> appscaling.CfnScalingPolicy:
    """A target-tracking policy on a metric-math ``expression`` (``CustomizedMetricSpecification.Metrics``)."""
    config = expression.to_metric_config().math_expression
    if config is None:
        raise ValueError("track_expression needs a cloudwatch.MathExpression")
    queries = []
    for metric_id, metric in sorted(config.using_metrics.items()):
        stat = metric.to_metric_config().metric_stat
        if stat is None:
            raise ValueError(f"metric {metric_id!r} of a scaling expression is itself an expression: inline it")
        queries.append(
            appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty(
                id=metric_id,
                metric_stat=appscaling.CfnScalingPolicy.TargetTrackingMetricStatProperty(
                    metric=appscaling.CfnScalingPolicy.TargetTrackingMetricProperty(
                        namespace=stat.namespace,
                        metric_name=stat.metric_name,
                        dimensions=[
                            appscaling.CfnScalingPolicy.TargetTrackingMetricDimensionProperty(
                                name=d.name, value=str(d.value)
                            )
                            for d in stat.dimensions or []
                        ],
                    ),
                    stat=stat.statistic,
                ),
                return_data=False,
            )
        )
    queries.append(
        appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty(
            id="result", expression=config.expression, label=expression.label, return_data=True
        )
    )
    # Next to the policies aws-cdk-lib makes: children of the scalable target.
    target = scaling.node.find_child("Target")
    assert isinstance(target, appscaling.ScalableTarget)
    holder = Construct(target, policy_id)
    task = settings.task
    return appscaling.CfnScalingPolicy(
        holder,
        "Resource",
        policy_name=Names.unique_id(holder),
        policy_type="TargetTrackingScaling",
        scaling_target_id=target.scalable_target_id,
        target_tracking_scaling_policy_configuration=appscaling.CfnScalingPolicy.TargetTrackingScalingPolicyConfigurationProperty(
            target_value=target_value,
            customized_metric_specification=appscaling.CfnScalingPolicy.CustomizedMetricSpecificationProperty(
                metrics=queries
            ),
            scale_in_cooldown=task.scale_in_cooldown_s,
            scale_out_cooldown=task.scale_out_cooldown_s,
        ),
    )


def _percent(value: float | None, kind: str) -> float | None:
    if value is not None and not 1 <= value <= 100:
        raise ValueError(f"{kind} scaling target {value} % is outside 1-100")
    return None if value is None else float(value)


def _positive(value: int | None, kind: str, *, required: bool = False) -> float | None:
    if value is None:
        if required:
            raise ValueError(f"{kind} scaling needs a target value")
        return None
    if value < 1:
        raise ValueError(f"{kind} scaling target {value} must be at least 1")
    return float(value)
