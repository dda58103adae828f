"""WebSocketObservability: the dashboard's metrics, the three alarms and the metric contract with the server."""

from __future__ import annotations

import io
import json
from typing import Any

from constructs_lib.observability import SERVER_METRICS
from stickyws.server.metrics import Metrics
from tests.cdk.test_service import VARIANT_SERVICE_NAME, only, variant

ALB_METRICS = (
    "ActiveConnectionCount",
    "NewConnectionCount",
    "HealthyHostCount",
    "UnHealthyHostCount",
    "HTTPCode_ELB_5XX_Count",
    "TargetConnectionErrorCount",
    "NonStickyRequestCount",
)


def dashboard_body(template_json: dict[str, Any]) -> dict[str, Any]:
    """The dashboard body with every token (they all sit inside JSON strings) replaced by TOKEN, parsed."""
    _, props = only(template_json, "AWS::CloudWatch::Dashboard")
    body = props["DashboardBody"]
    if isinstance(body, dict):
        body = "".join(part if isinstance(part, str) else "TOKEN" for part in body["Fn::Join"][1])
    return dict(json.loads(body))


def alarms(template_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{logical id: Properties}`` of every CloudWatch alarm."""
    return {k: v["Properties"] for k, v in template_json["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}


def alarm_on(template_json: dict[str, Any], metric_name: str) -> dict[str, Any]:
    """The one alarm on ``metric_name``."""
    found = [p for p in alarms(template_json).values() if p.get("MetricName") == metric_name]
    assert len(found) == 1
    return found[0]


def imbalance_alarm(template_json: dict[str, Any]) -> dict[str, Any]:
    """The one metric-math alarm."""
    found = [p for p in alarms(template_json).values() if "Metrics" in p]
    assert len(found) == 1
    return found[0]


def test_dashboard_shows_every_metric(reference_template_json: dict[str, Any]) -> None:
    """The dashboard graphs the ALB's connection, health and error metrics and the server's own metrics."""
    body = dashboard_body(reference_template_json)
    text = json.dumps(body)
    metric_names = {
        item
        for widget in body["widgets"]
        for row in widget["properties"].get("metrics", [])
        for item in row
        if isinstance(item, str)
    }
    assert set(ALB_METRICS) <= metric_names
    for name in (
        "ActiveConnections",
        "HandshakesAccepted",
        "SessionsResumed",
        "MessagesIn",
        "MessagesOut",
        "DrainSeconds",
    ):
        assert name in metric_names
    assert "StickyWebSocket" in metric_names
    # HandshakesRejected is emitted with (ServiceName, Reason): the dashboard searches it.
    assert 'SEARCH(\'{StickyWebSocket,ServiceName,Reason} MetricName=\\"HandshakesRejected\\"' in text
    titles = [w["properties"].get("title") for w in body["widgets"]]
    assert "Connections per task (server)" in titles
    assert "Rejected handshakes by reason" in titles


def test_unhealthy_hosts_alarm(reference_template_json: dict[str, Any]) -> None:
    """UnHealthyHostCount >= 1 (Maximum per minute) for 3 of 3 minutes raises the alarm."""
    alarm = alarm_on(reference_template_json, "UnHealthyHostCount")
    assert {k: alarm[k] for k in ("Namespace", "Statistic", "Period", "Threshold", "ComparisonOperator")} == {
        "Namespace": "AWS/ApplicationELB",
        "Statistic": "Maximum",
        "Period": 60,
        "Threshold": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    }
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"], alarm["TreatMissingData"]) == (3, 3, "notBreaching")
    assert {d["Name"] for d in alarm["Dimensions"]} == {"LoadBalancer", "TargetGroup"}


def test_elb_5xx_alarm(reference_template_json: dict[str, Any]) -> None:
    """Ten or more ELB-generated 5xx in 5 minutes raise the alarm."""
    alarm = alarm_on(reference_template_json, "HTTPCode_ELB_5XX_Count")
    assert (alarm["Statistic"], alarm["Period"], alarm["Threshold"], alarm["EvaluationPeriods"]) == ("Sum", 300, 10, 1)
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert [d["Name"] for d in alarm["Dimensions"]] == ["LoadBalancer"]


def test_connection_imbalance_alarm(reference_template_json: dict[str, Any]) -> None:
    """max - 2 x avg of ActiveConnections per task above 100 for three 5-minute periods raises the alarm."""
    service_id = next(k for k, v in reference_template_json["Resources"].items() if v["Type"] == "AWS::ECS::Service")
    alarm = imbalance_alarm(reference_template_json)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (100, "GreaterThanThreshold")
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 3)
    by_id = {m["Id"]: m for m in alarm["Metrics"]}
    assert by_id["expr_1"]["Expression"] == "conn_max - 2 * conn_avg"
    for metric_id, stat in (("conn_max", "Maximum"), ("conn_avg", "Average")):
        m = by_id[metric_id]
        assert m["ReturnData"] is False
        assert m["MetricStat"] == {
            "Metric": {
                "Namespace": "StickyWebSocket",
                "MetricName": "ActiveConnections",
                "Dimensions": [{"Name": "ServiceName", "Value": {"Fn::GetAtt": [service_id, "Name"]}}],
            },
            "Period": 300,
            "Stat": stat,
        }


def test_alarm_descriptions_and_no_actions_without_topic(reference_template_json: dict[str, Any]) -> None:
    """Each alarm explains itself; without a topic no action is configured (the reference stack passes none)."""
    found = alarms(reference_template_json)
    assert len(found) == 3
    for props in found.values():
        assert len(props["AlarmDescription"]) > 40
        if "AlarmActions" in props:  # a stack that passes a topic: each alarm notifies it
            assert props["AlarmActions"] == props["OKActions"]


def test_alarm_topic_and_custom_thresholds() -> None:
    """With an SNS topic every alarm notifies it on ALARM and OK; custom thresholds and namespace are rendered."""
    v = variant()
    found = alarms(v.json)
    assert len(found) == 3
    for props in found.values():
        assert props["AlarmActions"] == [{"Ref": v.topic_id}]
        assert props["OKActions"] == [{"Ref": v.topic_id}]
    unhealthy = alarm_on(v.json, "UnHealthyHostCount")
    assert (unhealthy["EvaluationPeriods"], unhealthy["DatapointsToAlarm"]) == (5, 5)
    assert alarm_on(v.json, "HTTPCode_ELB_5XX_Count")["Threshold"] == 25
    imbalance = imbalance_alarm(v.json)
    assert imbalance["Threshold"] == 300
    by_id = {m["Id"]: m for m in imbalance["Metrics"]}
    assert by_id["expr_1"]["Expression"] == "conn_max - 1.5 * conn_avg"
    assert by_id["conn_max"]["MetricStat"]["Metric"]["Namespace"] == "Custom/WebSockets"
    service_id = next(k for k, r in v.json["Resources"].items() if r["Type"] == "AWS::ECS::Service")
    assert v.json["Resources"][service_id]["Properties"]["ServiceName"] == VARIANT_SERVICE_NAME
    assert by_id["conn_max"]["MetricStat"]["Metric"]["Dimensions"] == [
        {"Name": "ServiceName", "Value": {"Fn::GetAtt": [service_id, "Name"]}}
    ]
    assert len(v.observability.alarms) == 3


def test_server_emits_what_the_dashboard_and_scaling_read() -> None:
    """The server's EMF lines use the metric names, namespace and ServiceName dimension the constructs read."""
    out = io.StringIO()
    metrics = Metrics("StickyWebSocket", service_name="svc-1", out=out, clock_ms=lambda: 1_700_000_000_000)
    metrics.count("HandshakesAccepted")
    metrics.reject("over-capacity")
    metrics.lag(3.5)
    metrics.flush(active_connections=7)
    metrics.drain_seconds(12.5)
    emitted: dict[str, list[list[str]]] = {}
    for line in out.getvalue().splitlines():
        doc = json.loads(line)
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "StickyWebSocket"
        for metric in directive["Metrics"]:
            emitted[metric["Name"]] = directive["Dimensions"]
        assert doc["ServiceName"] == "svc-1"
    assert set(emitted) == set(SERVER_METRICS)
    assert emitted["ActiveConnections"] == [["ServiceName"]]
    assert emitted["HandshakesRejected"] == [["Reason", "ServiceName"]]
