"""capacity_reservation_lcu reaches the ALB's MinimumLoadBalancerCapacity; availability_zone_rebalancing reaches the
Fargate service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk.assertions import Match, Template

from constructs_lib import StickyWebSocketLoadBalancer, WebSocketFargateService
from stickyws.settings import Settings
from tests.cdk.strategy_synth import synth_strategy
from tests.cdk_reference import new_app

pytestmark = pytest.mark.synth

ALB = "AWS::ElasticLoadBalancingV2::LoadBalancer"
SERVICE = "AWS::ECS::Service"


def _stack(tmp_path: Path) -> tuple[Stack, ec2.Vpc]:
    stack = Stack(new_app(tmp_path), "Capacity")
    return stack, ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)


def _props(template_json: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [r["Properties"] for r in template_json["Resources"].values() if r["Type"] == kind]
    return found


def test_reference_alb_reserves_no_capacity(reference_template_json: dict[str, Any]) -> None:
    """With the default capacity_reservation_lcu=0 the load balancer has no MinimumLoadBalancerCapacity."""
    assert "MinimumLoadBalancerCapacity" not in _props(reference_template_json, ALB)


def test_capacity_reservation_reaches_the_alb(tmp_path: Path) -> None:
    """capacity_reservation_lcu=250 becomes MinimumLoadBalancerCapacity.CapacityUnits 250 on the ALB it creates."""
    stack, vpc = _stack(tmp_path)
    settings = Settings().with_overrides({"capacity_reservation_lcu": 250})
    StickyWebSocketLoadBalancer(stack, "Web", vpc=vpc, settings=settings, http_only=True)
    Template.from_stack(stack).has_resource_properties(
        ALB, Match.object_like({"MinimumLoadBalancerCapacity": {"CapacityUnits": 250}})
    )


def test_reference_service_rebalances_zones(reference_template_json: dict[str, Any]) -> None:
    """The rolling reference service has AvailabilityZoneRebalancing ENABLED (the setting's default)."""
    assert _props(reference_template_json, SERVICE)["AvailabilityZoneRebalancing"] == "ENABLED"


def test_traffic_shifting_service_rebalances_zones() -> None:
    """The blue/green reference service has AvailabilityZoneRebalancing ENABLED too."""
    assert _props(synth_strategy("blue_green").template_json, SERVICE)["AvailabilityZoneRebalancing"] == "ENABLED"


def test_zone_rebalancing_off_reaches_the_service(tmp_path: Path) -> None:
    """availability_zone_rebalancing=false renders AvailabilityZoneRebalancing DISABLED."""
    stack, vpc = _stack(tmp_path)
    WebSocketFargateService(
        stack,
        "App",
        vpc=vpc,
        settings=Settings().with_overrides({"availability_zone_rebalancing": False}),
        image=ecs.ContainerImage.from_registry("public.ecr.aws/docker/library/python:3.11-slim"),
    )
    Template.from_stack(stack).has_resource_properties(
        SERVICE, Match.object_like({"AvailabilityZoneRebalancing": "DISABLED"})
    )
