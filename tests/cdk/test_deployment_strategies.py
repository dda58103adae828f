"""deployment_strategy: rolling stays as it was; blue/green, linear and canary get ECS's strategy, two target
groups, a weighted production rule and a test lane (one reference synth per strategy, shared)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs

from constructs_lib import StickyWebSocketLoadBalancer, WebSocketFargateService
from constructs_lib.load_balancer import TEST_LANE_QUERY
from constructs_lib.service import INFRASTRUCTURE_POLICY, deployment_props
from stacks import Outputs
from stickyws.settings import Settings
from tests.cdk.strategy_synth import SHIFTING_STRATEGIES, StrategySynth, synth_strategy
from tests.cdk_reference import new_app

pytestmark = pytest.mark.synth

SERVICE = "AWS::ECS::Service"
TG = "AWS::ElasticLoadBalancingV2::TargetGroup"
RULE = "AWS::ElasticLoadBalancingV2::ListenerRule"
LISTENER = "AWS::ElasticLoadBalancingV2::Listener"
ROLE = "AWS::IAM::Role"


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def _one(template: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    (found,) = _of_type(template, kind).items()
    return found


def _rule(template: dict[str, Any], construct_id: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(k, r) for k, r in _of_type(template, RULE).items() if k.startswith(f"LoadBalancer{construct_id}")]
    return found


@pytest.fixture(scope="module", params=SHIFTING_STRATEGIES)
def shifted(request: pytest.FixtureRequest) -> StrategySynth:
    """The reference app synthesized with -c deployment_strategy=<each traffic-shifting strategy>."""
    return synth_strategy(request.param)


@pytest.fixture(scope="module")
def blue_green() -> dict[str, Any]:
    """The blue/green reference template (the load balancer layout is the same for linear and canary)."""
    return synth_strategy("blue_green").template_json


# -- rolling: as before ----------------------------------------------------------------------------


def test_rolling_keeps_the_circuit_breaker_and_one_target_group(reference_template_json: dict[str, Any]) -> None:
    """The default (rolling) service has the circuit breaker with rollback, no strategy, no alternate target group."""
    _, service = _one(reference_template_json, SERVICE)
    config = service["Properties"]["DeploymentConfiguration"]
    assert config == {
        "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
        "MaximumPercent": 200,
        "MinimumHealthyPercent": 100,
    }
    assert len(_of_type(reference_template_json, TG)) == 1
    assert "AdvancedConfiguration" not in service["Properties"]["LoadBalancers"][0]
    assert Outputs.TEST_WEBSOCKET_URL not in reference_template_json["Outputs"]


# -- the service ------------------------------------------------------------------------------------


def test_service_deploys_with_the_strategy_and_bake_time(shifted: StrategySynth) -> None:
    """Each strategy renders ECS's Strategy, the bake time and step settings, the ECS controller, no circuit breaker."""
    _, service = _one(shifted.template_json, SERVICE)
    props = service["Properties"]
    expected: dict[str, Any] = {
        "BakeTimeInMinutes": 15,
        "MaximumPercent": 200,
        "MinimumHealthyPercent": 100,
        "Strategy": shifted.strategy.upper(),
    }
    if shifted.strategy == "linear":
        expected["LinearConfiguration"] = {"StepPercent": 10, "StepBakeTimeInMinutes": 6}
    if shifted.strategy == "canary":
        expected["CanaryConfiguration"] = {"CanaryPercent": 10, "CanaryBakeTimeInMinutes": 6}
    config = dict(props["DeploymentConfiguration"])
    assert [h["LifecycleStages"] for h in config.pop("LifecycleHooks")] == [
        ["POST_PRODUCTION_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT"]
    ]  # the migration hook (tests/cdk/test_migration_hook.py)
    assert config == expected
    assert props["DeploymentController"] == {"Type": "ECS"}


def test_service_hands_ecs_the_alternate_group_rules_and_role(shifted: StrategySynth) -> None:
    """The service's load balancer entry names the alternate target group, the production and test rules and
    the infrastructure role, which ECS assumes with the load balancer policy."""
    template = shifted.template_json
    _, service = _one(template, SERVICE)
    (entry,) = service["Properties"]["LoadBalancers"]
    production_id, _ = _rule(template, "ProductionRule")
    test_id, _ = _rule(template, "TestRule")
    (alternate_id,) = [k for k in _of_type(template, TG) if k.startswith("LoadBalancerAlternateTargetGroup")]
    role_ref = entry["AdvancedConfiguration"]["RoleArn"]["Fn::GetAtt"][0]
    assert entry["AdvancedConfiguration"] == {
        "AlternateTargetGroupArn": {"Ref": alternate_id},
        "ProductionListenerRule": {"Ref": production_id},
        "TestListenerRule": {"Ref": test_id},
        "RoleArn": {"Fn::GetAtt": [role_ref, "Arn"]},
    }
    role = template["Resources"][role_ref]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ecs.amazonaws.com"}
    assert json.dumps(role["ManagedPolicyArns"]).count(f"policy/{INFRASTRUCTURE_POLICY}") == 1


def test_service_waits_for_the_alternate_group_on_the_listener(blue_green: dict[str, Any]) -> None:
    """The service is created after both rules that put the alternate target group on the listener."""
    _, service = _one(blue_green, SERVICE)
    production_id, _ = _rule(blue_green, "ProductionRule")
    test_id, _ = _rule(blue_green, "TestRule")
    assert {production_id, test_id} <= set(service["DependsOn"])


def test_deployment_props_follow_the_settings() -> None:
    """Non-default bake, step and step bake settings reach the L2 props unchanged (canary) and the breaker stays
    rolling-only."""
    settings = Settings().with_overrides(
        {"deployment_strategy": "canary", "bake_time_min": 30, "traffic_step_percent": 2.5, "step_bake_time_min": 4}
    )
    props = deployment_props(settings)
    assert set(props) == {"deployment_strategy", "deployment_controller", "bake_time", "canary_configuration"}
    assert props["deployment_strategy"] is ecs.DeploymentStrategy.CANARY
    assert props["bake_time"].to_minutes() == 30
    step = props["canary_configuration"]
    assert (step.step_percent, step.step_bake_time.to_minutes()) == (2.5, 4)
    assert set(deployment_props(Settings())) == {"circuit_breaker"}


# -- the load balancer ------------------------------------------------------------------------------


def test_alternate_target_group_has_the_same_attributes(blue_green: dict[str, Any]) -> None:
    """The green target group's properties equal the blue one's: stickiness, delay, health check, HTTP/1.1, ip."""
    groups = {k.split("TargetGroup")[0]: r["Properties"] for k, r in _of_type(blue_green, TG).items()}
    assert set(groups) == {"LoadBalancer", "LoadBalancerAlternate"}
    blue, green = groups["LoadBalancer"], groups["LoadBalancerAlternate"]
    assert green == blue
    attributes = {a["Key"]: a["Value"] for a in green["TargetGroupAttributes"]}
    assert attributes["stickiness.type"] == "lb_cookie"
    assert attributes["stickiness.lb_cookie.duration_seconds"] == "86400"
    assert attributes["deregistration_delay.timeout_seconds"] == "60"
    assert (green["ProtocolVersion"], green["TargetType"], green["HealthCheckPath"]) == ("HTTP1", "ip", "/health")


def test_production_rule_is_an_unsticky_weighted_forward_of_every_path(blue_green: dict[str, Any]) -> None:
    """The production rule matches every path, has one forward action, blue 100 / green 0, no group stickiness."""
    _, rule = _rule(blue_green, "ProductionRule")
    props = rule["Properties"]
    (blue_id,) = [k for k in _of_type(blue_green, TG) if k.startswith("LoadBalancerTargetGroup")]
    (green_id,) = [k for k in _of_type(blue_green, TG) if k.startswith("LoadBalancerAlternateTargetGroup")]
    assert props["Conditions"] == [{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/*"]}}]
    assert props["Actions"] == [
        {
            "Type": "forward",
            "ForwardConfig": {
                "TargetGroups": [
                    {"TargetGroupArn": {"Ref": blue_id}, "Weight": 100},
                    {"TargetGroupArn": {"Ref": green_id}, "Weight": 0},
                ]
            },
        }
    ]
    assert props["Priority"] == 2


def test_test_rule_sends_the_lane_query_to_green_first(blue_green: dict[str, Any]) -> None:
    """The test rule (priority 1, before production) forwards ?stickyws-lane=test to the alternate target group."""
    _, rule = _rule(blue_green, "TestRule")
    (green_id,) = [k for k in _of_type(blue_green, TG) if k.startswith("LoadBalancerAlternateTargetGroup")]
    key, value = TEST_LANE_QUERY
    assert rule["Properties"]["Priority"] == 1
    assert rule["Properties"]["Conditions"] == [
        {"Field": "query-string", "QueryStringConfig": {"Values": [{"Key": key, "Value": value}]}}
    ]
    assert rule["Properties"]["Actions"] == [{"Type": "forward", "TargetGroupArn": {"Ref": green_id}}]
    url = blue_green["Outputs"][Outputs.TEST_WEBSOCKET_URL]["Value"]["Fn::Join"][1]
    assert url[-1] == f"/ws?{key}={value}"


def test_no_rule_forwards_around_the_production_rule(blue_green: dict[str, Any]) -> None:
    """The listeners hold only the test and production rules: no Upgrade-header or polling rule ECS would not shift."""
    rules = _of_type(blue_green, RULE)
    assert sorted(k.split("Rule")[0] for k in rules) == ["LoadBalancerProduction", "LoadBalancerTest"]
    assert "http-header" not in json.dumps([r["Properties"]["Conditions"] for r in rules.values()])


def test_traffic_shifting_stack_passes_cdk_nag(shifted: StrategySynth) -> None:
    """cdk-nag's AwsSolutions pack passes every traffic-shifting synth (the infrastructure role acknowledged)."""
    report = json.loads((shifted.outdir / "validation-report.json").read_text(encoding="utf-8"))
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert (plugin["conclusion"], plugin["violations"]) == ("success", [])
    acknowledged = [f for f in plugin["suppressedViolations"] if INFRASTRUCTURE_POLICY in json.dumps(f)]
    assert [f["ruleName"].split("[")[0] for f in acknowledged] == ["AwsSolutions-IAM4"]
    assert "/Service/DeploymentRole" in acknowledged[0]["acknowledgedAt"]


def test_traffic_shifting_stack_has_no_circuit_breaker_warning(shifted: StrategySynth) -> None:
    """The synth does not carry aws-cdk-lib's circuit-breaker warning (acknowledged: the breaker is rolling-only), nor,
    with the migration hook installed (tests/cdk/test_migration_hook.py), the warning that blue's sockets are cut."""
    warnings = [
        str(m.data) for node in shifted.stack.node.find_all() for m in node.node.metadata if m.type == "aws:cdk:warning"
    ]
    assert not any("shouldUseCircuitBreaker" in w for w in warnings)
    assert not any("stops all blue tasks together" in w for w in warnings)


# -- the constructs on their own ------------------------------------------------------------------


def _stack(tmp_path: Path) -> tuple[Stack, ec2.Vpc]:
    app = new_app(tmp_path)
    stack = Stack(app, "Strategies")
    return stack, ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)


BLUE_GREEN = Settings().with_overrides({"deployment_strategy": "blue_green"})


def test_shared_listener_needs_production_paths(tmp_path: Path) -> None:
    """On a listener passed in, blue/green refuses a /* production rule and names production_paths."""
    from aws_cdk import aws_elasticloadbalancingv2 as elbv2

    stack, vpc = _stack(tmp_path)
    alb = elbv2.ApplicationLoadBalancer(stack, "Alb", vpc=vpc)
    listener = alb.add_listener("Http", port=80, default_action=elbv2.ListenerAction.fixed_response(404))
    with pytest.raises(ValueError, match=r"pass production_paths=\[\.\.\.\]"):
        StickyWebSocketLoadBalancer(stack, "Web", vpc=vpc, settings=BLUE_GREEN, listener=listener, load_balancer=alb)


def test_shared_listener_production_paths_include_polling(tmp_path: Path) -> None:
    """With production_paths on a shared listener, the production rule matches them and the polling paths, and the
    test rule needs both its query string and those paths."""
    from aws_cdk import aws_elasticloadbalancingv2 as elbv2
    from aws_cdk.assertions import Template

    stack, vpc = _stack(tmp_path)
    alb = elbv2.ApplicationLoadBalancer(stack, "Alb", vpc=vpc)
    listener = alb.add_listener("Http", port=80, default_action=elbv2.ListenerAction.fixed_response(404))
    StickyWebSocketLoadBalancer(
        stack,
        "Web",
        vpc=vpc,
        settings=BLUE_GREEN,
        listener=listener,
        load_balancer=alb,
        production_paths=["/ws", "/health"],
        polling_paths=["/socket.io/*"],
        upgrade_rule_priority=10,
    )
    rules = {
        k: r["Properties"] for k, r in Template.from_stack(stack).to_json()["Resources"].items() if r["Type"] == RULE
    }
    (production,) = [p for k, p in rules.items() if "ProductionRule" in k]
    (test,) = [p for k, p in rules.items() if "TestRule" in k]
    paths = {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/ws", "/health", "/socket.io/*"]}}
    assert (production["Priority"], production["Conditions"]) == (11, [paths])
    assert test["Priority"] == 10
    assert test["Conditions"][1] == paths
    assert len(rules) == 2


@pytest.mark.parametrize(("lb_strategy", "service_strategy"), [("rolling", "blue_green"), ("linear", "rolling")])
def test_attach_refuses_a_strategy_the_layout_was_not_built_for(
    tmp_path: Path, lb_strategy: str, service_strategy: str
) -> None:
    """A load balancer laid out for one kind of deployment refuses a service of the other, naming the setting."""
    stack, vpc = _stack(tmp_path)
    web = StickyWebSocketLoadBalancer(
        stack, "Web", vpc=vpc, settings=Settings().with_overrides({"deployment_strategy": lb_strategy}), http_only=True
    )
    service = WebSocketFargateService(
        stack,
        "App",
        vpc=vpc,
        settings=Settings().with_overrides({"deployment_strategy": service_strategy}),
        image=ecs.ContainerImage.from_registry("public.ecr.aws/docker/library/python:3.11-slim"),
    )
    with pytest.raises(ValueError, match="from the same deployment_strategy setting"):
        web.attach(service)


def test_production_paths_need_a_traffic_shifting_strategy(tmp_path: Path) -> None:
    """production_paths with a rolling deployment is refused: there is no production rule to shape."""
    stack, vpc = _stack(tmp_path)
    with pytest.raises(ValueError, match="set deployment_strategy"):
        StickyWebSocketLoadBalancer(
            stack, "Web", vpc=vpc, settings=Settings(), http_only=True, production_paths=["/ws"]
        )


def test_plain_ecs_service_gets_the_alternate_target_too(tmp_path: Path) -> None:
    """A plain ECS service attached to a blue/green layout is registered with the alternate target group and rules
    (aws-cdk-lib makes its role)."""
    from aws_cdk.assertions import Match, Template

    stack, vpc = _stack(tmp_path)
    web = StickyWebSocketLoadBalancer(stack, "Web", vpc=vpc, settings=BLUE_GREEN, http_only=True)
    task = ecs.FargateTaskDefinition(stack, "Task")
    task.add_container(
        "web",
        image=ecs.ContainerImage.from_registry("public.ecr.aws/docker/library/python:3.11-slim"),
        port_mappings=[ecs.PortMapping(container_port=8080)],
    )
    service = ecs.FargateService(
        stack,
        "Plain",
        cluster=ecs.Cluster(stack, "Cluster", vpc=vpc),
        task_definition=task,
        deployment_strategy=ecs.DeploymentStrategy.BLUE_GREEN,
    )
    web.attach(service)
    Template.from_stack(stack).has_resource_properties(
        SERVICE,
        {
            "LoadBalancers": [
                Match.object_like(
                    {
                        "AdvancedConfiguration": Match.object_like(
                            {"ProductionListenerRule": Match.any_value(), "TestListenerRule": Match.any_value()}
                        )
                    }
                )
            ]
        },
    )
