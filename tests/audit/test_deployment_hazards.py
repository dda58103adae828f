"""The audit's blue/green, linear and canary hazards, each read from a template edited to show it.

The base is the reference app synthesized with ``-c deployment_strategy=blue_green`` (shared with the CDK and
moto tests, tests/cdk/strategy_synth.py); each edit breaks one thing and exactly its check must say so.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stickyws.audit.checks import Status, audit
from stickyws.audit.from_template import view_from_template
from tests.audit.edits import TG_TYPE, only
from tests.cdk.strategy_synth import synth_strategy

pytestmark = pytest.mark.synth

RULE = "AWS::ElasticLoadBalancingV2::ListenerRule"
SERVICE = "AWS::ECS::Service"
NEW_CHECKS = (
    "weighted-forward-not-sticky",
    "production-rule-forward-only",
    "target-optimizer-off",
    "deployment-moves-blue-sockets",
)


@pytest.fixture(scope="module")
def blue_green() -> dict[str, Any]:
    """The blue/green reference template (never modified: every edit works on a deep copy)."""
    return synth_strategy("blue_green").template_json


def _rows(template: dict[str, Any]) -> dict[str, tuple[Status, str]]:
    result = audit(view_from_template(template))
    return {r.rule: (r.status, r.found) for r in result.results}


def _rule(template: dict[str, Any], construct_id: str) -> dict[str, Any]:
    (found,) = [r["Properties"] for k, r in template["Resources"].items() if r["Type"] == RULE and construct_id in k]
    return found


def _target_groups(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == TG_TYPE]


def test_blue_green_template_reads_both_target_groups_and_the_rules(blue_green: dict[str, Any]) -> None:
    """The reader takes the service's own target group as the WebSocket one, the green one as alternate, and the
    service's strategy, bake time and rules."""
    view = view_from_template(blue_green)
    assert view.target_group is not None
    assert view.alternate_target_group is not None
    assert view.target_group.id.startswith("LoadBalancerTargetGroup")
    assert view.alternate_target_group.id.startswith("LoadBalancerAlternateTargetGroup")
    assert view.service is not None
    assert (view.service.strategy, view.service.bake_time_min, view.service.lifecycle_stages) == (
        "BLUE_GREEN",
        15,
        ("POST_PRODUCTION_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT"),
    )
    (shift,) = view.service.shift_targets
    assert shift.production_rule is not None
    assert shift.production_rule.startswith("LoadBalancerProductionRule")
    assert shift.test_rule is not None
    assert shift.test_rule.startswith("LoadBalancerTestRule")


def test_blue_green_template_passes_the_layout_checks_and_the_hook(blue_green: dict[str, Any]) -> None:
    """As synthesized: forward-only rules, no group stickiness, no optimizer, the migration hook after the production
    shift; the rolling-only circuit breaker is skipped, not failed."""
    rows = _rows(blue_green)
    assert {k: rows[k][0] for k in NEW_CHECKS} == {
        "weighted-forward-not-sticky": Status.PASS,
        "production-rule-forward-only": Status.PASS,
        "target-optimizer-off": Status.PASS,
        "deployment-moves-blue-sockets": Status.PASS,
    }
    assert "a lifecycle hook runs at POST_PRODUCTION_TRAFFIC_SHIFT" in rows["deployment-moves-blue-sockets"][1]
    assert rows["deployment-circuit-breaker"][0] is Status.SKIP
    assert rows["upgrade-rule"] == (Status.PASS, "HTTPS:443: priority 2 (the production rule)")


def test_blue_green_template_without_the_hook_warns_on_blue_sockets(blue_green: dict[str, Any]) -> None:
    """With the lifecycle hooks taken out (migration_hook=false), blue's sockets warn: nothing moves them."""
    template = copy.deepcopy(blue_green)
    (service,) = [r["Properties"] for r in template["Resources"].values() if r["Type"] == SERVICE]
    del service["DeploymentConfiguration"]["LifecycleHooks"]
    status, found = _rows(template)["deployment-moves-blue-sockets"]
    assert status is Status.WARN
    assert "cuts every one of those sockets at once" in found


def test_rolling_reference_passes_the_new_checks(reference_template_json: dict[str, Any]) -> None:
    """The rolling reference stack: no weighted forward, no production rule to judge, its drain moves the sockets."""
    rows = _rows(reference_template_json)
    assert rows["weighted-forward-not-sticky"] == (Status.PASS, "no weighted forward to the WebSocket target groups")
    assert rows["production-rule-forward-only"] == (
        Status.PASS,
        "deployment_strategy=rolling: ECS shifts no listener rule",
    )
    assert rows["deployment-moves-blue-sockets"][0] is Status.PASS
    assert rows["target-optimizer-off"][0] is Status.PASS


def test_group_stickiness_on_the_weighted_forward_fails(blue_green: dict[str, Any]) -> None:
    """TargetGroupStickinessConfig Enabled on the production rule's weighted forward fails, naming AWSALBTG."""
    template = copy.deepcopy(blue_green)
    forward = _rule(template, "ProductionRule")["Actions"][0]["ForwardConfig"]
    forward["TargetGroupStickinessConfig"] = {"Enabled": True, "DurationSeconds": 3600}
    status, found = _rows(template)["weighted-forward-not-sticky"]
    assert status is Status.FAIL
    assert "HTTPS:443 priority 2" in found
    assert "AWSALBTG" in found


def test_disabled_group_stickiness_passes(blue_green: dict[str, Any]) -> None:
    """An explicit Enabled=false is the same as none: the check passes."""
    template = copy.deepcopy(blue_green)
    forward = _rule(template, "ProductionRule")["Actions"][0]["ForwardConfig"]
    forward["TargetGroupStickinessConfig"] = {"Enabled": False}
    assert _rows(template)["weighted-forward-not-sticky"][0] is Status.PASS


@pytest.mark.parametrize(
    ("rule", "action"),
    [
        (
            "ProductionRule",
            {
                "Type": "authenticate-oidc",
                "Order": 1,
                "AuthenticateOidcConfig": {
                    "Issuer": "https://idp.example.com",
                    "AuthorizationEndpoint": "https://idp.example.com/auth",
                    "TokenEndpoint": "https://idp.example.com/token",
                    "UserInfoEndpoint": "https://idp.example.com/userinfo",
                    "ClientId": "client",
                    "ClientSecret": "secret",
                },
            },
        ),
        ("TestRule", {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}),
    ],
)
def test_non_forward_action_on_a_shifted_rule_fails(
    blue_green: dict[str, Any], rule: str, action: dict[str, Any]
) -> None:
    """An authenticate or fixed-response action on the production or test rule fails: ECS would fail the deployment."""
    template = copy.deepcopy(blue_green)
    _rule(template, rule)["Actions"].insert(0, action)
    status, found = _rows(template)["production-rule-forward-only"]
    assert status is Status.FAIL
    assert f"also has {action['Type']} actions, which make ECS fail the deployment" in found


def test_a_rule_forwarding_around_the_production_rule_fails(blue_green: dict[str, Any]) -> None:
    """An Upgrade: websocket rule straight to the blue target group (never shifted) fails the production-rule check."""
    template = copy.deepcopy(blue_green)
    production = _rule(template, "ProductionRule")
    blue = production["Actions"][0]["ForwardConfig"]["TargetGroups"][0]["TargetGroupArn"]
    template["Resources"]["BypassRule"] = {
        "Type": RULE,
        "Properties": {
            "ListenerArn": production["ListenerArn"],
            "Priority": 50,
            "Conditions": [
                {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "Upgrade", "Values": ["websocket"]}}
            ],
            "Actions": [{"Type": "forward", "TargetGroupArn": blue}],
        },
    }
    status, found = _rows(template)["production-rule-forward-only"]
    assert status is Status.FAIL
    assert "HTTPS:443 priority 50 forwards to the service's target group outside the production rule" in found


def test_service_without_its_production_rule_fails(blue_green: dict[str, Any]) -> None:
    """A blue/green service that names no alternate target group and production rule fails with the fix."""
    template = copy.deepcopy(blue_green)
    for entry in only(template, SERVICE)["LoadBalancers"]:
        entry.pop("AdvancedConfiguration")
    status, found = _rows(template)["production-rule-forward-only"]
    assert (status, found) == (
        Status.FAIL,
        "deployment_strategy=blue_green but the service names no alternate target group and production listener rule",
    )


@pytest.mark.parametrize("which", [0, 1])
def test_target_optimizer_on_either_target_group_fails(blue_green: dict[str, Any], which: int) -> None:
    """TargetControlPort (the ALB target optimizer) on the blue or the green target group fails: no WebSockets."""
    template = copy.deepcopy(blue_green)
    _target_groups(template)[which]["TargetControlPort"] = 3000
    status, found = _rows(template)["target-optimizer-off"]
    assert status is Status.FAIL
    assert "(TargetControlPort=3000): it does not support WebSockets" in found


def test_target_optimizer_fails_a_rolling_stack_too(reference_template_json: dict[str, Any]) -> None:
    """The optimizer check also guards the rolling stack's one target group."""
    template = copy.deepcopy(reference_template_json)
    only(template, TG_TYPE)["TargetControlPort"] = 4000
    assert _rows(template)["target-optimizer-off"][0] is Status.FAIL


def test_lifecycle_hook_after_the_production_shift_passes(blue_green: dict[str, Any]) -> None:
    """A hook at POST_PRODUCTION_TRAFFIC_SHIFT (where blue's clients can be moved) turns the warning into a pass;
    a hook only before the shift does not."""
    template = copy.deepcopy(blue_green)
    hook = {"HookTargetArn": "arn:aws:lambda:eu-west-1:123456789012:function:f", "RoleArn": "arn:aws:iam::1:role/r"}
    config = only(template, SERVICE)["DeploymentConfiguration"]
    config["LifecycleHooks"] = [{**hook, "LifecycleStages": ["PRE_SCALE_UP"]}]
    assert _rows(template)["deployment-moves-blue-sockets"][0] is Status.WARN
    config["LifecycleHooks"].append({**hook, "LifecycleStages": ["POST_PRODUCTION_TRAFFIC_SHIFT"]})
    assert _rows(template)["deployment-moves-blue-sockets"][0] is Status.PASS


def test_linear_steps_are_read_into_the_settings_rules() -> None:
    """A linear template's step percent and step bake reach the settings rules: a plan beyond 33 h fails."""
    template = copy.deepcopy(synth_strategy("linear").template_json)
    config = only(template, SERVICE)["DeploymentConfiguration"]
    config["LinearConfiguration"] = {"StepPercent": 3, "StepBakeTimeInMinutes": 60}
    result = audit(view_from_template(template))
    assert result.observed["traffic_step_percent"].text == "3"
    row = result.result("deployment-plan")
    assert row.status is Status.FAIL
    assert "more than the 1980 min (33 h) CloudFormation accepts" in row.found
