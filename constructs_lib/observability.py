"""Dashboard and alarms for a sticky WebSocket service.

The dashboard shows the load balancer's view (ActiveConnectionCount, NewConnectionCount,
HealthyHostCount, UnHealthyHostCount, HTTPCode_ELB_5XX_Count, TargetConnectionErrorCount,
NonStickyRequestCount) next to the server's own metrics, which the server publishes in CloudWatch
embedded metric format in ``metrics_namespace`` with the dimension ``ServiceName`` (see
docs/iac-components.md, "Metrics the server emits"):

==================== ===== ==================================================================
metric               unit  meaning
==================== ===== ==================================================================
ActiveConnections    Count open WebSockets of one task (gauge; Average over tasks = per task)
HandshakesAccepted   Count upgrades accepted
HandshakesRejected   Count upgrades refused; emitted with the dimensions ``ServiceName, Reason``
SessionsResumed      Count reconnects that resumed a session
MessagesIn/Out       Count messages received from / sent to clients
DrainSeconds         Sec.  how long a drain took, from the notice to the last client gone
==================== ===== ==================================================================

Alarms (each with its reason in the alarm description):

* unhealthy hosts: the target group's UnHealthyHostCount (Maximum per minute) >= 1 for
  ``unhealthy_evaluation_periods`` minutes in a row;
* ELB 5xx: HTTPCode_ELB_5XX_Count summed over 5 minutes >= ``elb_5xx_threshold``;
* connection imbalance: ``Maximum - imbalance_factor x Average`` of ActiveConnections over the
  tasks exceeds ``imbalance_floor_connections`` for three 5-minute periods (sticky clients do not
  rebalance by themselves after a scale-out or a deployment).
"""

from __future__ import annotations

from typing import Final

from aws_cdk import Annotations, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_sns as sns
from constructs import Construct

from constructs_lib.settings_check import apply_settings
from stickyws.settings import Scope, Settings

#: Metric names the server emits in ``metrics_namespace`` (the EMF contract with the server).
ACTIVE_CONNECTIONS: Final = "ActiveConnections"
HANDSHAKES_ACCEPTED: Final = "HandshakesAccepted"
HANDSHAKES_REJECTED: Final = "HandshakesRejected"
SESSIONS_RESUMED: Final = "SessionsResumed"
MESSAGES_IN: Final = "MessagesIn"
MESSAGES_OUT: Final = "MessagesOut"
DRAIN_SECONDS: Final = "DrainSeconds"
PUSHES_DELIVERED: Final = "PushesDelivered"
DELIVERIES: Final = "Deliveries"
PUBLICATIONS: Final = "Publications"
SLOW_CONSUMER_CLOSES: Final = "SlowConsumerCloses"
RECOVERY_FAILURES: Final = "RecoveryFailures"
REPLAY_GAPS: Final = "ReplayGaps"
PUBLISH_LAG_MS: Final = "PublishLagMs"
SENDS_ON: Final = "SendsOn"
SERVER_METRICS: Final = (
    ACTIVE_CONNECTIONS,
    HANDSHAKES_ACCEPTED,
    HANDSHAKES_REJECTED,
    SESSIONS_RESUMED,
    MESSAGES_IN,
    MESSAGES_OUT,
    DRAIN_SECONDS,
    PUSHES_DELIVERED,
    DELIVERIES,
    PUBLICATIONS,
    SLOW_CONSUMER_CLOSES,
    RECOVERY_FAILURES,
    REPLAY_GAPS,
    PUBLISH_LAG_MS,
    SENDS_ON,
)
#: Dimension of every server metric (value: the ECS service name); ``Reason`` is added for rejections.
SERVICE_NAME_DIMENSION: Final = "ServiceName"
REASON_DIMENSION: Final = "Reason"

#: Annotation id of the note that an own server's dashboard shows the load balancer's view only.
OWN_SERVER_INFO_ID: Final = "stickyws:observability:own-server"
#: The parts this construct watches (the rules it runs).
OBSERVED_PARTS: Final = frozenset({Scope.LOAD_BALANCER, Scope.SERVICE})
ONE_MINUTE: Final = Duration.minutes(1)
FIVE_MINUTES: Final = Duration.minutes(5)
#: Evaluation periods (5 min each) of the imbalance alarm: a reconnect wave settles within them.
IMBALANCE_EVALUATION_PERIODS: Final = 3


class WebSocketObservability(Construct):
    """A CloudWatch dashboard and three alarms for the load balancer, target group and server metrics.

    :param settings: the deployment's settings (``metrics_namespace``); checked with ``apply_settings``.
    :param load_balancer: the ALB whose metrics are shown.
    :param target_group: the target group of the service (healthy/unhealthy hosts).
    :param service: the ECS service; its name is the ``ServiceName`` dimension of the server metrics.
    :param alarm_topic: SNS topic notified when an alarm fires and when it clears. Default: none.
    :param unhealthy_evaluation_periods: minutes with an unhealthy host before the alarm, 1-60. Default 3.
    :param elb_5xx_threshold: ELB-generated 5xx responses in 5 minutes that raise the alarm. Default 10.
    :param imbalance_factor: how many times the average a task's connections may reach. Default 2.
    :param imbalance_floor_connections: slack above ``factor x average`` before the imbalance alarm,
        so that small absolute numbers do not alarm. Default 100.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        settings: Settings,
        load_balancer: elbv2.IApplicationLoadBalancer,
        target_group: elbv2.IApplicationTargetGroup,
        service: ecs.BaseService,
        alarm_topic: sns.ITopic | None = None,
        unhealthy_evaluation_periods: int = 3,
        elb_5xx_threshold: int = 10,
        imbalance_factor: float = 2.0,
        imbalance_floor_connections: int = 100,
    ) -> None:
        super().__init__(scope, id_)
        apply_settings(self, settings, OBSERVED_PARTS)
        if not 1 <= unhealthy_evaluation_periods <= 60:
            raise ValueError(f"unhealthy_evaluation_periods={unhealthy_evaluation_periods} is outside 1-60 minutes")
        if imbalance_factor < 1:
            raise ValueError(f"imbalance_factor={imbalance_factor} is below 1: a task always holds the average")
        self._namespace: str = settings["metrics_namespace"]
        self._service_name = service.service_name
        lb = load_balancer.metrics
        tg = target_group.metrics

        unhealthy = tg.unhealthy_host_count(statistic="Maximum", period=ONE_MINUTE)
        healthy = tg.healthy_host_count(statistic="Minimum", period=ONE_MINUTE)
        elb_5xx = lb.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, statistic="Sum", period=FIVE_MINUTES)

        self._unhealthy_alarm = cloudwatch.Alarm(
            self,
            "UnhealthyHostsAlarm",
            alarm_description=(
                f"A WebSocket task failed its health check for {unhealthy_evaluation_periods} minutes in a row; "
                "its clients will be moved when ECS replaces it."
            ),
            metric=unhealthy,
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=unhealthy_evaluation_periods,
            datapoints_to_alarm=unhealthy_evaluation_periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self._elb_5xx_alarm = cloudwatch.Alarm(
            self,
            "Elb5xxAlarm",
            alarm_description=(
                f"The load balancer itself answered 5xx at least {elb_5xx_threshold} times in 5 minutes "
                "(no healthy target, target connection errors or timeouts)."
            ),
            metric=elb_5xx,
            threshold=elb_5xx_threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        own = settings.own_server
        self._imbalance_alarm: cloudwatch.Alarm | None = None
        imbalance: cloudwatch.MathExpression | None = None
        if not own:
            conn_avg = self.server_metric(ACTIVE_CONNECTIONS, "Average", FIVE_MINUTES)
            conn_max = self.server_metric(ACTIVE_CONNECTIONS, "Maximum", FIVE_MINUTES)
            imbalance = cloudwatch.MathExpression(
                expression=f"conn_max - {imbalance_factor:g} * conn_avg",
                using_metrics={"conn_max": conn_max, "conn_avg": conn_avg},
                label=f"max - {imbalance_factor:g} x avg connections per task",
                period=FIVE_MINUTES,
            )
            self._imbalance_alarm = cloudwatch.Alarm(
                self,
                "ConnectionImbalanceAlarm",
                alarm_description=(
                    f"The busiest task holds more than {imbalance_factor:g} x the average connections per task "
                    f"+ {imbalance_floor_connections}: sticky clients do not rebalance by themselves."
                ),
                metric=imbalance,
                threshold=imbalance_floor_connections,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=IMBALANCE_EVALUATION_PERIODS,
                datapoints_to_alarm=IMBALANCE_EVALUATION_PERIODS,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        else:
            Annotations.of(self).add_info_v2(
                OWN_SERVER_INFO_ID,
                "server_mode=own: the dashboard and alarms show the load balancer and target group only (the "
                "connection-imbalance alarm and the server widgets read the reference server's metrics); add "
                "your server's own metrics with observability.dashboard.add_widgets(...)",
            )
        self._alarms = tuple(
            a for a in (self._unhealthy_alarm, self._elb_5xx_alarm, self._imbalance_alarm) if a is not None
        )
        if alarm_topic is not None:
            action = cw_actions.SnsAction(alarm_topic)
            for alarm in self._alarms:
                alarm.add_alarm_action(action)
                alarm.add_ok_action(action)

        self._dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        lb_connections = cloudwatch.GraphWidget(
            title="Load balancer connections",
            left=[
                lb.active_connection_count(statistic="Sum", period=ONE_MINUTE),
                lb.new_connection_count(statistic="Sum", period=ONE_MINUTE),
            ],
            width=12,
        )
        target_health = cloudwatch.GraphWidget(
            title="Target health",
            left=[
                tg.healthy_host_count(statistic="Minimum", period=ONE_MINUTE),
                tg.unhealthy_host_count(statistic="Maximum", period=ONE_MINUTE),
            ],
            width=8 if imbalance is not None else 12,
        )
        lb_errors = cloudwatch.GraphWidget(
            title="Errors at the load balancer",
            left=[
                lb.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, statistic="Sum", period=ONE_MINUTE),
                lb.target_connection_error_count(statistic="Sum", period=ONE_MINUTE),
                lb.custom("NonStickyRequestCount", statistic="Sum", period=ONE_MINUTE),
            ],
            width=8 if imbalance is not None else 12,
        )
        if imbalance is None:
            self._dashboard.add_widgets(
                lb_connections, cloudwatch.AlarmStatusWidget(alarms=list(self._alarms), title="Alarms", width=12)
            )
            self._dashboard.add_widgets(target_health, lb_errors)
            return
        self._add_server_widgets(
            healthy, unhealthy, lb_connections, target_health, lb_errors, imbalance, imbalance_floor_connections
        )

    def _add_server_widgets(
        self,
        healthy: cloudwatch.Metric,
        unhealthy: cloudwatch.Metric,
        lb_connections: cloudwatch.GraphWidget,
        target_health: cloudwatch.GraphWidget,
        lb_errors: cloudwatch.GraphWidget,
        imbalance: cloudwatch.MathExpression,
        imbalance_floor_connections: int,
    ) -> None:
        """The reference server's widgets beside the load balancer's: its metrics, the imbalance, the alarms."""
        rejected_search = (
            f"SEARCH('{{{self._namespace},{SERVICE_NAME_DIMENSION},{REASON_DIMENSION}}} "
            f'MetricName="{HANDSHAKES_REJECTED}" {SERVICE_NAME_DIMENSION}="{self._service_name}"\', '
            "'Sum', 60)"
        )
        # The server emits HandshakesRejected only with the dimensions (ServiceName, Reason).
        rejected_by_reason = cloudwatch.MathExpression(expression=rejected_search, label="", period=ONE_MINUTE)
        rejected_total = cloudwatch.MathExpression(
            expression=f"SUM({rejected_search})", label=HANDSHAKES_REJECTED, period=ONE_MINUTE
        )
        self._dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Connections per task (server)",
                left=[
                    self.server_metric(ACTIVE_CONNECTIONS, "Average", ONE_MINUTE, label="average per task"),
                    self.server_metric(ACTIVE_CONNECTIONS, "Maximum", ONE_MINUTE, label="busiest task"),
                    self.server_metric(ACTIVE_CONNECTIONS, "Minimum", ONE_MINUTE, label="idlest task"),
                ],
                right=[healthy.with_(label="healthy tasks"), unhealthy.with_(label="unhealthy tasks")],
                width=12,
            ),
            lb_connections,
        )
        self._dashboard.add_widgets(
            target_health,
            lb_errors,
            cloudwatch.GraphWidget(
                title="Connection imbalance",
                left=[imbalance],
                left_annotations=[cloudwatch.HorizontalAnnotation(value=imbalance_floor_connections, label="alarm")],
                width=8,
            ),
        )
        self._dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Handshakes",
                left=[
                    self.server_metric(HANDSHAKES_ACCEPTED, "Sum", ONE_MINUTE),
                    rejected_total,
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(title="Rejected handshakes by reason", left=[rejected_by_reason], width=8),
            cloudwatch.GraphWidget(
                title="Resumes and drains",
                left=[self.server_metric(SESSIONS_RESUMED, "Sum", ONE_MINUTE)],
                right=[self.server_metric(DRAIN_SECONDS, "Maximum", ONE_MINUTE)],
                width=8,
            ),
        )
        self._dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Messages",
                left=[
                    self.server_metric(MESSAGES_IN, "Sum", ONE_MINUTE),
                    self.server_metric(MESSAGES_OUT, "Sum", ONE_MINUTE),
                ],
                width=24,
            ),
        )
        self._dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Push: publications and deliveries",
                left=[
                    self.server_metric(PUBLICATIONS, "Sum", ONE_MINUTE),
                    self.server_metric(PUSHES_DELIVERED, "Sum", ONE_MINUTE),
                    self.server_metric(DELIVERIES, "Sum", ONE_MINUTE),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Publish-to-send lag (ms)",
                left=[
                    self.server_metric(PUBLISH_LAG_MS, "p50", ONE_MINUTE, label="p50"),
                    self.server_metric(PUBLISH_LAG_MS, "p99", ONE_MINUTE, label="p99"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Slow consumers and lost history",
                left=[
                    self.server_metric(SLOW_CONSUMER_CLOSES, "Sum", ONE_MINUTE),
                    self.server_metric(RECOVERY_FAILURES, "Sum", ONE_MINUTE),
                    self.server_metric(REPLAY_GAPS, "Sum", ONE_MINUTE),
                ],
                width=8,
            ),
            cloudwatch.AlarmStatusWidget(alarms=list(self._alarms), title="Alarms", width=24),
        )

    def server_metric(
        self, metric_name: str, statistic: str, period: Duration, *, label: str | None = None
    ) -> cloudwatch.Metric:
        """Server metric ``metric_name`` of this service (``metrics_namespace``, dimension ``ServiceName``)."""
        return cloudwatch.Metric(
            namespace=self._namespace,
            metric_name=metric_name,
            dimensions_map={SERVICE_NAME_DIMENSION: self._service_name},
            statistic=statistic,
            period=period,
            label=label,
        )

    @property
    def dashboard(self) -> cloudwatch.Dashboard:
        """The CloudWatch dashboard."""
        return self._dashboard

    @property
    def alarms(self) -> tuple[cloudwatch.Alarm, ...]:
        """The unhealthy-hosts, ELB-5xx and (reference server only) connection-imbalance alarms, in that order."""
        return self._alarms
