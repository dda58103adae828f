"""The blue/green, linear and canary reference stacks deployed into moto through stickyws.testing, audited live.

One moto account for the module: each strategy's template (tests/cdk/strategy_synth.py) is deployed with
``deploy_template`` (moto's CloudFormation plus the workarounds of stickyws.testing.moto_compat), then read back
with boto3 like a live stack. Hazards are made live with public API calls (modify_rule, update_service) and
must show in the next audit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stickyws.audit.checks import Status
from stickyws.testing import MotoDeployment, deploy_template
from stickyws.testing.aws_env import REGION
from tests.cdk.strategy_synth import SHIFTING_STRATEGIES, synth_strategy

pytestmark = [pytest.mark.synth, pytest.mark.filterwarnings("ignore:Tried to parse AWS::")]

RULE = "AWS::ElasticLoadBalancingV2::ListenerRule"


@pytest.fixture(scope="module")
def deployed(aws_environment: None) -> Iterator[dict[str, MotoDeployment]]:
    """Each traffic-shifting strategy's reference stack, deployed once into one moto account."""
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        yield {
            strategy: deploy_template(
                session, synth_strategy(strategy).template_json, f"Stack-{strategy.replace('_', '-')}"
            )
            for strategy in SHIFTING_STRATEGIES
        }


def _rule_arn(deployment: MotoDeployment, construct_id: str) -> str:
    (logical,) = [k for k, r in deployment.template["Resources"].items() if r["Type"] == RULE and construct_id in k]
    return deployment.physical[logical]


@pytest.mark.parametrize("strategy", SHIFTING_STRATEGIES)
def test_live_service_shows_the_strategy_and_its_steps(deployed: dict[str, MotoDeployment], strategy: str) -> None:
    """Read back live, the service's strategy, bake and steps become the deployment settings the rules judge."""
    audit = deployed[strategy].audit()
    observed = {name: audit.observed[name].text for name in ("deployment_strategy", "bake_time_min")}
    assert observed == {"deployment_strategy": strategy, "bake_time_min": "15"}
    if strategy != "blue_green":
        assert (audit.observed["traffic_step_percent"].text, audit.observed["step_bake_time_min"].text) == ("10", "6")
    assert audit.result("deployment-plan").status is Status.PASS
    assert audit.result("deployment-moves-connections").status is Status.PASS  # migration_hook=true


@pytest.mark.parametrize("strategy", SHIFTING_STRATEGIES)
def test_live_layout_passes_the_blue_green_checks(deployed: dict[str, MotoDeployment], strategy: str) -> None:
    """The deployed layout passes the forward-only, no-group-stickiness and Upgrade checks, skips the circuit breaker
    and passes the blue-sockets check: the migration hook runs after the production shift."""
    audit = deployed[strategy].audit()
    rows = {r.rule: r.status for r in audit.results}
    assert {k: rows[k] for k in ("production-rule-forward-only", "weighted-forward-not-sticky", "upgrade-rule")} == {
        "production-rule-forward-only": Status.PASS,
        "weighted-forward-not-sticky": Status.PASS,
        "upgrade-rule": Status.PASS,
    }
    assert rows["deployment-circuit-breaker"] is Status.SKIP
    assert rows["deployment-moves-blue-sockets"] is Status.PASS
    assert "the production rule" in audit.result("upgrade-rule").found
    service = (
        deployed[strategy]
        .session.client("ecs")
        .describe_services(
            cluster=deployed[strategy].physical_id("AWS::ECS::Cluster"),
            services=[deployed[strategy].physical_id("AWS::ECS::Service")],
        )["services"][0]
    )
    (hook,) = service["deploymentConfiguration"]["lifecycleHooks"]
    assert hook["lifecycleStages"] == ["POST_PRODUCTION_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT"]
    assert ":function:" in hook["hookTargetArn"]


def test_live_group_stickiness_on_the_production_rule_fails(deployed: dict[str, MotoDeployment]) -> None:
    """Turning on AWSALBTG stickiness on the live production rule's weighted forward fails the next audit."""
    deployment = deployed["canary"]
    elbv2 = deployment.session.client("elbv2")
    arn = _rule_arn(deployment, "ProductionRule")
    (action,) = elbv2.describe_rules(RuleArns=[arn])["Rules"][0]["Actions"]
    action["ForwardConfig"]["TargetGroupStickinessConfig"] = {"Enabled": True, "DurationSeconds": 3600}
    elbv2.modify_rule(RuleArn=arn, Actions=[action])
    row = deployment.audit().result("weighted-forward-not-sticky")
    assert row.status is Status.FAIL
    assert "AWSALBTG" in row.found


def test_live_hook_moved_off_the_production_shift_warns(deployed: dict[str, MotoDeployment]) -> None:
    """The live hook moved to another stage (none left after the production shift) turns the blue-sockets pass into a
    warning naming the stages found."""
    deployment = deployed["linear"]
    ecs = deployment.session.client("ecs")
    cluster = deployment.physical_id("AWS::ECS::Cluster")
    service_arn = deployment.physical_id("AWS::ECS::Service")
    assert deployment.audit().result("deployment-moves-blue-sockets").status is Status.PASS
    config = ecs.describe_services(cluster=cluster, services=[service_arn])["services"][0]["deploymentConfiguration"]
    config["lifecycleHooks"] = [
        {
            "hookTargetArn": f"arn:aws:lambda:{REGION}:123456789012:function:smoke-test",
            "roleArn": "arn:aws:iam::123456789012:role/ecs-hooks",
            "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
        }
    ]
    ecs.update_service(cluster=cluster, service=service_arn, deploymentConfiguration=config)
    row = deployment.audit().result("deployment-moves-blue-sockets")
    assert row.status is Status.WARN
    assert "(hooks: POST_TEST_TRAFFIC_SHIFT)" in row.found


def test_live_rule_bypassing_the_production_rule_fails(deployed: dict[str, MotoDeployment]) -> None:
    """A live Upgrade: websocket rule straight to blue (ECS never shifts it) fails the production-rule check."""
    deployment = deployed["blue_green"]
    elbv2 = deployment.session.client("elbv2")
    rule: dict[str, Any] = elbv2.describe_rules(RuleArns=[_rule_arn(deployment, "ProductionRule")])["Rules"][0]
    blue = rule["Actions"][0]["ForwardConfig"]["TargetGroups"][0]["TargetGroupArn"]
    load_balancer = deployment.physical_id("AWS::ElasticLoadBalancingV2::LoadBalancer")
    listeners = elbv2.describe_listeners(LoadBalancerArn=load_balancer)
    (listener,) = [item["ListenerArn"] for item in listeners["Listeners"] if item["Protocol"] == "HTTPS"]
    elbv2.create_rule(
        ListenerArn=listener,
        Priority=100,
        Conditions=[
            {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "Upgrade", "Values": ["websocket"]}}
        ],
        Actions=[{"Type": "forward", "TargetGroupArn": blue}],
    )
    row = deployment.audit().result("production-rule-forward-only")
    assert row.status is Status.FAIL
    assert "priority 100 forwards to the service's target group outside the production rule" in row.found
