"""Canaries for moto's CloudFormation gaps: one strict xfail per workaround in stickyws.testing.moto_compat.GAPS.

Each canary deploys nothing but the raw template (``create_stack``, no workaround) and asserts
that moto applied the property natively. Today each fails, which is the expected (x)failure. The
day a moto upgrade applies the property, the canary passes, ``strict=True`` turns that XPASS into
a failed run, and the matching workaround in stickyws/testing/moto_compat.py (and this canary) should be deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stickyws.testing.aws_env import REGION
from stickyws.testing.moto_compat import GAPS, create_stack, deploy
from tests.audit.edits import only, server_container
from tests.cdk.strategy_synth import synth_strategy

pytestmark = [pytest.mark.synth, pytest.mark.filterwarnings("ignore:Tried to parse AWS::")]


@dataclass(frozen=True)
class Raw:
    """The reference stack as moto's CloudFormation alone deployed it, and what boto3 reads back."""

    template: dict[str, Any]
    lb_attributes: dict[str, str]
    tg_attributes: dict[str, str]
    service: dict[str, Any]
    task: dict[str, Any]


def _read_back(session: Any, template: dict[str, Any], physical: dict[str, str]) -> Raw:
    types = {logical: r["Type"] for logical, r in template["Resources"].items()}

    def physical_of(kind: str) -> str:
        return next(p for logical, p in physical.items() if types.get(logical) == kind)

    elbv2, ecs = session.client("elbv2"), session.client("ecs")
    lb = physical_of("AWS::ElasticLoadBalancingV2::LoadBalancer")
    tg = physical_of("AWS::ElasticLoadBalancingV2::TargetGroup")  # the first: the service's own
    cluster, service_arn = physical_of("AWS::ECS::Cluster"), physical_of("AWS::ECS::Service")
    service = ecs.describe_services(cluster=cluster, services=[service_arn])["services"][0]
    return Raw(
        template=template,
        lb_attributes={
            a["Key"]: a["Value"] for a in elbv2.describe_load_balancer_attributes(LoadBalancerArn=lb)["Attributes"]
        },
        tg_attributes={
            a["Key"]: a["Value"] for a in elbv2.describe_target_group_attributes(TargetGroupArn=tg)["Attributes"]
        },
        service=service,
        task=ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"],
    )


@pytest.fixture(scope="module")
def deployments(aws_environment: None, reference_template_json: dict[str, Any]) -> Iterator[tuple[Raw, Raw]]:
    """The reference template deployed twice: by moto's CloudFormation alone, and with the workarounds."""
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        raw = _read_back(session, reference_template_json, create_stack(session, reference_template_json, "Raw"))
        patched = _read_back(session, reference_template_json, deploy(session, reference_template_json, "Patched"))
        yield raw, patched


@pytest.fixture(scope="module")
def linear_deployments(aws_environment: None) -> Iterator[tuple[Raw, Raw]]:
    """The reference template with deployment_strategy=linear, deployed raw and with the workarounds."""
    template = synth_strategy("linear").template_json
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        raw = _read_back(session, template, create_stack(session, template, "RawLinear"))
        patched = _read_back(session, template, deploy(session, template, "PatchedLinear"))
        yield raw, patched


@pytest.fixture
def raw(deployments: tuple[Raw, Raw]) -> Raw:
    """What moto's CloudFormation alone made of the reference template."""
    return deployments[0]


@pytest.fixture
def raw_linear(linear_deployments: tuple[Raw, Raw]) -> Raw:
    """What moto's CloudFormation alone made of the linear reference template."""
    return linear_deployments[0]


def _template_attributes(template: dict[str, Any], kind: str, prop: str) -> dict[str, str]:
    return {a["Key"]: a["Value"] for a in only(template, kind)[prop]}


CANARIES: dict[str, Any] = {}
#: The deployments fixture each canary's patched stack comes from (default: the rolling reference).
CANARY_DEPLOYMENTS: dict[str, str] = {}


def canary(gap_id: str, deployments: str = "deployments") -> Any:
    """Mark a test as the strict-xfail canary of ``gap_id``, judged on the stack of fixture ``deployments``."""

    def mark(fn: Any) -> Any:
        CANARIES[gap_id] = fn
        CANARY_DEPLOYMENTS[gap_id] = deployments
        reason = f"moto 5.2.5 drops {GAPS[gap_id].dropped}; workaround: {GAPS[gap_id].workaround}"
        return pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)(fn)

    return mark


def test_every_gap_has_a_canary() -> None:
    """Each workaround in moto_compat.GAPS has exactly one canary here, and no canary lacks a workaround."""
    assert set(CANARIES) == set(GAPS)


@pytest.mark.parametrize("gap_id", sorted(GAPS))
def test_canary_passes_once_the_property_is_applied(request: pytest.FixtureRequest, gap_id: str) -> None:
    """Each canary passes on the stack its workaround patched, so its xfail comes from moto, not the canary."""
    deployments: tuple[Raw, Raw] = request.getfixturevalue(CANARY_DEPLOYMENTS[gap_id])
    CANARIES[gap_id](deployments[1])


@canary("load-balancer-attributes")
def test_moto_applies_load_balancer_attributes(raw: Raw) -> None:
    """moto's CloudFormation applies the template's LoadBalancerAttributes."""
    wanted = _template_attributes(raw.template, "AWS::ElasticLoadBalancingV2::LoadBalancer", "LoadBalancerAttributes")
    assert {k: raw.lb_attributes.get(k) for k in ("idle_timeout.timeout_seconds", "routing.http2.enabled")} == {
        "idle_timeout.timeout_seconds": wanted["idle_timeout.timeout_seconds"],
        "routing.http2.enabled": wanted["routing.http2.enabled"],
    }


@canary("target-group-attributes")
def test_moto_applies_target_group_attributes(raw: Raw) -> None:
    """moto's CloudFormation applies the template's TargetGroupAttributes."""
    wanted = _template_attributes(raw.template, "AWS::ElasticLoadBalancingV2::TargetGroup", "TargetGroupAttributes")
    keys = ("deregistration_delay.timeout_seconds", "stickiness.enabled")
    assert {k: raw.tg_attributes.get(k) for k in keys} == {k: wanted[k] for k in keys}


@canary("task-definition-fargate")
def test_moto_applies_task_definition_fargate_fields(raw: Raw) -> None:
    """moto's CloudFormation keeps the task definition's Cpu, NetworkMode and RequiresCompatibilities."""
    props = only(raw.template, "AWS::ECS::TaskDefinition")
    assert (raw.task.get("cpu"), raw.task.get("networkMode"), raw.task.get("requiresCompatibilities")) == (
        props["Cpu"],
        props["NetworkMode"],
        props["RequiresCompatibilities"],
    )


@canary("service-load-balancers")
def test_moto_applies_service_load_balancers(raw: Raw) -> None:
    """moto's CloudFormation registers the ECS service with its target group (LoadBalancers)."""
    assert [m.get("containerName") for m in raw.service.get("loadBalancers") or []] == [
        server_container(raw.template)["Name"]
    ]


@canary("service-network-configuration")
def test_moto_applies_service_network_configuration(raw: Raw) -> None:
    """moto's CloudFormation keeps the ECS service's awsvpc security groups."""
    groups = ((raw.service.get("networkConfiguration") or {}).get("awsvpcConfiguration") or {}).get("securityGroups")
    assert groups, "no security groups on the service"


@canary("service-deployment-configuration")
def test_moto_applies_service_deployment_configuration(raw: Raw) -> None:
    """moto's CloudFormation keeps the circuit breaker, minimum healthy percent and grace period."""
    props = only(raw.template, "AWS::ECS::Service")
    config = raw.service.get("deploymentConfiguration") or {}
    assert (
        config.get("deploymentCircuitBreaker"),
        config.get("minimumHealthyPercent"),
        raw.service.get("healthCheckGracePeriodSeconds"),
    ) == (
        {"enable": True, "rollback": True},
        props["DeploymentConfiguration"]["MinimumHealthyPercent"],
        props["HealthCheckGracePeriodSeconds"],
    )


@canary("service-deployment-strategy", "linear_deployments")
def test_moto_applies_service_deployment_strategy(raw_linear: Raw) -> None:
    """moto's CloudFormation keeps a linear service's strategy, bake time, linear configuration and lifecycle hooks
    (the migration hook's stages)."""
    wanted = only(raw_linear.template, "AWS::ECS::Service")["DeploymentConfiguration"]
    config = raw_linear.service.get("deploymentConfiguration") or {}
    assert (config.get("strategy"), config.get("bakeTimeInMinutes"), config.get("linearConfiguration")) == (
        wanted["Strategy"],
        wanted["BakeTimeInMinutes"],
        {
            "stepPercent": wanted["LinearConfiguration"]["StepPercent"],
            "stepBakeTimeInMinutes": wanted["LinearConfiguration"]["StepBakeTimeInMinutes"],
        },
    )
    assert [h.get("lifecycleStages") for h in config.get("lifecycleHooks") or []] == [
        h["LifecycleStages"] for h in wanted["LifecycleHooks"]
    ]


@canary("service-advanced-configuration", "linear_deployments")
def test_moto_applies_service_advanced_configuration(raw_linear: Raw) -> None:
    """moto's CloudFormation keeps the alternate target group and the production and test rules of the service."""
    entries = raw_linear.service.get("loadBalancers") or []
    advanced = [e.get("advancedConfiguration") or {} for e in entries]
    assert [sorted(a) for a in advanced] == [
        ["alternateTargetGroupArn", "productionListenerRule", "roleArn", "testListenerRule"]
    ]


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="moto 5.2.5 drops TargetControlPort, with no workaround")
def test_moto_keeps_a_target_control_port(aws_environment: None) -> None:
    """moto keeps a target group's TargetControlPort (the ALB target optimizer); it drops it even through the API,
    so the target-optimizer check is proven on templates only (tests/audit/test_deployment_hazards.py)."""
    with mock_aws():
        elbv2 = boto3.client("elbv2", region_name=REGION)
        vpc = boto3.client("ec2", region_name=REGION).create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        group = elbv2.create_target_group(
            Name="optimized", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip", TargetControlPort=3000
        )["TargetGroups"][0]
        assert group.get("TargetControlPort") == 3000
