"""The reference stack: what it creates and what it outputs."""

from __future__ import annotations

from typing import Any


def test_reference_stack_synthesizes_a_load_balancer(reference_template: Any) -> None:
    """The reference synth yields exactly one application load balancer."""
    reference_template.resource_count_is("AWS::ElasticLoadBalancingV2::LoadBalancer", 1)
