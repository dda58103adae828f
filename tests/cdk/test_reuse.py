"""Reuse: the constructs in a stack that brings its own VPC, cluster, ALB and listener.

The stack under test is the "Reuse in your own stack" example of README.md, read from that file
and executed, so the documentation cannot drift from what is tested.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk.assertions import Template

from constructs_lib import CONTAINER_NAME, StickyWebSocketLoadBalancer
from constructs_lib.load_balancer import UNMANAGED_ATTRIBUTES_WARNING_ID
from stickyws.settings import Settings
from tests.cdk_reference import REFERENCE_CERTIFICATE_ARN, REPO_ROOT, new_app

pytestmark = pytest.mark.synth

DOC = REPO_ROOT / "README.md"
EXAMPLE = re.compile(r"<!-- reuse-example:start -->\s*```python\n(?P<code>.*?)```\s*<!-- reuse-example:end -->", re.S)
#: The example's settings: what the assertions below expect.
EXAMPLE_SETTINGS = Settings().with_overrides({"idle_timeout_s": 300, "deregistration_delay_s": 90})


def example_source() -> str:
    """The Python code of the reuse example in README.md."""
    match = EXAMPLE.search(DOC.read_text(encoding="utf-8"))
    assert match is not None, "README.md lost its reuse example markers"
    return match.group("code")


@pytest.fixture(scope="module")
def reuse(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Synthesize the docs example once: MyWebSocketStack with a certificate ARN."""
    namespace: dict[str, Any] = {"__name__": "readme_reuse_example"}
    exec(compile(example_source(), str(DOC), "exec"), namespace)
    app = new_app(tmp_path_factory.mktemp("reuse"))
    stack = namespace["MyWebSocketStack"](app, "MyStack", certificate_arn=REFERENCE_CERTIFICATE_ARN)
    return Template.from_stack(stack).to_json()


def _of_type(template_json: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template_json["Resources"].items() if r["Type"] == type_}


def _attributes(resource: dict[str, Any], key: str) -> dict[str, Any]:
    return {a["Key"]: a["Value"] for a in resource["Properties"][key]}


def test_only_the_users_load_balancer_and_listener_exist(reuse: dict[str, Any]) -> None:
    """The construct creates no ALB, no listener and no log bucket of its own next to the user's."""
    assert len(_of_type(reuse, "AWS::ElasticLoadBalancingV2::LoadBalancer")) == 1
    assert len(_of_type(reuse, "AWS::ElasticLoadBalancingV2::Listener")) == 1
    assert len(_of_type(reuse, "AWS::S3::Bucket")) == 0
    (listener,) = _of_type(reuse, "AWS::ElasticLoadBalancingV2::Listener").values()
    assert listener["Properties"]["DefaultActions"] == [
        {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}
    ]


def test_users_alb_gets_the_settings_attributes(reuse: dict[str, Any]) -> None:
    """The user's ALB carries HTTP/2 off, idle 300 s and the other load-balancer settings."""
    (alb,) = _of_type(reuse, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    attrs = _attributes(alb, "LoadBalancerAttributes")
    assert attrs["routing.http2.enabled"] == "false"
    assert attrs["idle_timeout.timeout_seconds"] == "300"
    assert attrs["client_keep_alive.seconds"] == "3600"
    assert attrs["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attrs["routing.http.desync_mitigation_mode"] == "defensive"


def test_upgrade_rule_sits_on_the_users_listener(reuse: dict[str, Any]) -> None:
    """Priority 10 on the user's HTTPS listener matches `Upgrade: websocket` and forwards to the new group."""
    ((listener_id, _),) = _of_type(reuse, "AWS::ElasticLoadBalancingV2::Listener").items()
    ((tg_id, _),) = _of_type(reuse, "AWS::ElasticLoadBalancingV2::TargetGroup").items()
    (rule,) = _of_type(reuse, "AWS::ElasticLoadBalancingV2::ListenerRule").values()
    props = rule["Properties"]
    assert props["ListenerArn"] == {"Ref": listener_id}
    assert props["Priority"] == 10
    assert props["Conditions"] == [
        {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "Upgrade", "Values": ["websocket"]}}
    ]
    assert props["Actions"] == [{"Type": "forward", "TargetGroupArn": {"Ref": tg_id}}]


def test_target_group_carries_every_target_group_setting(reuse: dict[str, Any]) -> None:
    """The target group has the example's settings: dereg 90 s, lb_cookie 86400 s, health check /health 30/5/2/3."""
    (tg,) = _of_type(reuse, "AWS::ElasticLoadBalancingV2::TargetGroup").values()
    attrs = _attributes(tg, "TargetGroupAttributes")
    assert attrs == {
        "deregistration_delay.timeout_seconds": "90",
        "stickiness.enabled": "true",
        "stickiness.type": "lb_cookie",
        "stickiness.lb_cookie.duration_seconds": "86400",
    }
    props = tg["Properties"]
    assert (props["TargetType"], props["Protocol"], props["ProtocolVersion"], props["Port"]) == (
        "ip",
        "HTTP",
        "HTTP1",
        8080,
    )
    assert (props["HealthCheckPath"], props["HealthCheckIntervalSeconds"], props["HealthCheckTimeoutSeconds"]) == (
        "/health",
        30,
        5,
    )
    assert (props["HealthyThresholdCount"], props["UnhealthyThresholdCount"], props["Matcher"]) == (
        2,
        3,
        {"HttpCode": "200"},
    )
    assert EXAMPLE_SETTINGS["deregistration_delay_s"] == 90


def test_users_cluster_runs_the_service_behind_the_group(reuse: dict[str, Any]) -> None:
    """The service runs in the user's cluster, registered with the group, reachable from the ALB on 8080."""
    ((cluster_id, _),) = _of_type(reuse, "AWS::ECS::Cluster").items()
    ((tg_id, _),) = _of_type(reuse, "AWS::ElasticLoadBalancingV2::TargetGroup").items()
    (service,) = _of_type(reuse, "AWS::ECS::Service").values()
    props = service["Properties"]
    assert props["Cluster"] == {"Ref": cluster_id}
    assert props["LoadBalancers"] == [
        {"ContainerName": CONTAINER_NAME, "ContainerPort": 8080, "TargetGroupArn": {"Ref": tg_id}}
    ]
    (alb,) = _of_type(reuse, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    alb_sg = alb["Properties"]["SecurityGroups"][0]
    service_sg = props["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"][0]
    ingress = [
        r["Properties"]
        for r in _of_type(reuse, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == service_sg
    ]
    assert [(i["SourceSecurityGroupId"], i["FromPort"], i["ToPort"]) for i in ingress] == [(alb_sg, 8080, 8080)]


def test_imported_listener_gets_only_a_target_group_and_a_rule(tmp_path: Path) -> None:
    """With a listener imported by ARN only the target group and the rule are created, and a warning lists the
    ALB attributes the owner must set."""
    app = new_app(tmp_path)
    stack = Stack(app, "Imported")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    alb_sg = ec2.SecurityGroup.from_security_group_id(stack, "AlbSg", "sg-0123456789abcdef0")
    listener = elbv2.ApplicationListener.from_application_listener_attributes(
        stack,
        "Listener",
        listener_arn="arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/shared/50dc6c495c0c9188/f2f7dc8efc522ab2",
        security_group=alb_sg,
    )
    alb = elbv2.ApplicationLoadBalancer.from_application_load_balancer_attributes(
        stack,
        "Alb",
        load_balancer_arn="arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/shared/50dc6c495c0c9188",
        security_group_id="sg-0123456789abcdef0",
        load_balancer_dns_name="shared-123.eu-west-1.elb.amazonaws.com",
    )
    web = StickyWebSocketLoadBalancer(
        stack, "Web", vpc=vpc, settings=EXAMPLE_SETTINGS, load_balancer=alb, listener=listener, upgrade_rule_priority=7
    )
    template = Template.from_stack(stack).to_json()
    counts = {
        t: len(_of_type(template, f"AWS::ElasticLoadBalancingV2::{t}"))
        for t in ("LoadBalancer", "Listener", "TargetGroup", "ListenerRule")
    }
    assert counts == {"LoadBalancer": 0, "Listener": 0, "TargetGroup": 1, "ListenerRule": 1}
    (rule,) = _of_type(template, "AWS::ElasticLoadBalancingV2::ListenerRule").values()
    assert rule["Properties"]["ListenerArn"].endswith("listener/app/shared/50dc6c495c0c9188/f2f7dc8efc522ab2")
    assert rule["Properties"]["Priority"] == 7
    warnings = [str(m.data) for m in web.node.metadata if m.type == "aws:cdk:warning"]
    assert len(warnings) == 1
    assert "idle_timeout.timeout_seconds=300" in warnings[0]
    assert "routing.http2.enabled=false" in warnings[0]
    assert web.websocket_url == "wss://shared-123.eu-west-1.elb.amazonaws.com/ws"
    assert UNMANAGED_ATTRIBUTES_WARNING_ID.startswith("stickyws:")
