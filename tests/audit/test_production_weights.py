"""The production rule's live weights against where the service's tasks are (a stack update writing the coded
weights back after ECS shifted production), read with boto3 from the blue/green reference stack deployed in moto."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stickyws.audit.checks import Status, audit
from stickyws.audit.from_template import view_from_template
from stickyws.testing import MotoDeployment, deploy_template
from stickyws.testing.aws_env import REGION, fake_aws_environment
from tests.cdk.strategy_synth import synth_strategy

pytestmark = [pytest.mark.synth, pytest.mark.filterwarnings("ignore:Tried to parse AWS::")]

CHECK = "production-weights-follow-tasks"
TG = "AWS::ElasticLoadBalancingV2::TargetGroup"
RULE = "AWS::ElasticLoadBalancingV2::ListenerRule"


@pytest.fixture
def stack() -> Iterator[MotoDeployment]:
    """The blue/green reference stack deployed into a fresh moto account, no target registered yet."""
    with pytest.MonkeyPatch.context() as mp:
        fake_aws_environment(mp)
        with mock_aws():
            yield deploy_template(boto3.Session(region_name=REGION), synth_strategy("blue_green").template_json, "Bg")


def _groups(stack: MotoDeployment) -> tuple[str, str]:
    """ARNs of the construct's (blue) target group and the alternate (green) one."""
    (blue,) = [p for k, p in stack.physical.items() if k.startswith("LoadBalancerTargetGroup")]
    (green,) = [p for k, p in stack.physical.items() if k.startswith("LoadBalancerAlternateTargetGroup")]
    return blue, green


def _register(stack: MotoDeployment, group: str, *ips: str) -> None:
    stack.session.client("elbv2").register_targets(
        TargetGroupArn=group, Targets=[{"Id": ip, "Port": 8080} for ip in ips]
    )


def _weigh(stack: MotoDeployment, blue_weight: int, green_weight: int) -> str:
    """Write the production rule's weights live (as ECS does during a shift); its ARN."""
    (logical,) = [k for k, r in stack.template["Resources"].items() if r["Type"] == RULE and "ProductionRule" in k]
    arn = stack.physical[logical]
    blue, green = _groups(stack)
    forward = {
        "TargetGroups": [
            {"TargetGroupArn": blue, "Weight": blue_weight},
            {"TargetGroupArn": green, "Weight": green_weight},
        ]
    }
    stack.session.client("elbv2").modify_rule(RuleArn=arn, Actions=[{"Type": "forward", "ForwardConfig": forward}])
    return arn


def test_reset_weights_toward_the_empty_group_fail_with_the_fix(stack: MotoDeployment) -> None:
    """Tasks in green while the rule sends 100 % to empty blue (the coded weights a stack update writes back): the
    check fails, names both groups and gives the modify-rule command that sends production to green."""
    blue, green = _groups(stack)
    _register(stack, green, "10.0.4.10", "10.0.4.11")
    rule = _weigh(stack, 100, 0)

    row = stack.audit().result(CHECK)

    assert row.status is Status.FAIL
    blue_name, green_name = blue.split("/")[1], green.split("/")[1]
    assert f"sends 100% of new requests to {blue_name}, which has no healthy target (0 registered)" in row.found
    assert f"while {green_name} holds the service's 2 target(s)" in row.found
    assert (
        f"aws elbv2 modify-rule --rule-arn {rule} --actions 'Type=forward,ForwardConfig={{TargetGroups="
        f"[{{TargetGroupArn={green},Weight=100}},{{TargetGroupArn={blue},Weight=0}}]}}'"
    ) in row.fix
    assert stack.audit().exit_code == 1


def test_weights_on_the_group_with_the_tasks_pass(stack: MotoDeployment) -> None:
    """Tasks in green and production weighted to green (after a completed deployment): the check passes."""
    _, green = _groups(stack)
    _register(stack, green, "10.0.4.10")
    _weigh(stack, 0, 100)

    row = stack.audit().result(CHECK)

    assert row.status is Status.PASS
    assert f"100% to {green.split('/')[1]}, 1 healthy of 1 registered" in row.found


def test_no_target_anywhere_warns(stack: MotoDeployment) -> None:
    """No target in either group (a service with no running task) warns rather than blaming the weights."""
    row = stack.audit().result(CHECK)
    assert row.status is Status.WARN
    assert "no target group of it has a target" in row.found


def test_a_template_cannot_count_targets() -> None:
    """Read from a template the targets are unknown: the check is skipped and says to audit the live stack."""
    row = audit(view_from_template(synth_strategy("blue_green").template_json)).result(CHECK)
    assert row.status is Status.SKIP
    assert "stickyws audit --stack-name" in row.found


def test_rolling_reference_has_no_weights(reference_template_json: dict[str, Any]) -> None:
    """A rolling service has one target group and no weights to judge."""
    row = audit(view_from_template(reference_template_json)).result(CHECK)
    assert (row.status, row.found) == (Status.PASS, "deployment_strategy=rolling: one target group, no weights")


def test_unreadable_target_health_is_a_note_not_a_failure() -> None:
    """Without elasticloadbalancing:DescribeTargetHealth the targets stay uncounted and a note names the permission."""
    from botocore.exceptions import ClientError

    from stickyws.audit.from_aws import _Reader

    class Denying:
        def describe_target_health(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "DescribeTargetHealth")

    class Session:
        def client(self, _name: str) -> Any:
            return Denying()

    reader = _Reader(Session())
    assert reader.target_counts("arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/tg/1") == {}
    (note,) = reader.notes
    assert note.startswith("targets of arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/tg/1 not counted: no ")
    assert "(DescribeTargetHealth)" in note
