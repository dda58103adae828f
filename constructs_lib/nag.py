"""cdk-nag wiring: the AwsSolutions pack as a CDK validation plugin, and every acknowledgement with its reason.

cdk-nag 3.x runs as a policy-validation plugin (``Validations.of(app).add_plugins(AwsSolutionsChecks(app))``);
the 2.x ``Aspects.of(app).add(...)`` form fails on this CDK version. A finding is acknowledged with
``Validations.of(scope).acknowledge(Acknowledgment(id="AwsSolutions::AwsSolutions-XXX", reason=...))``
on the narrowest scope that owns it, so a new resource elsewhere that breaks the same rule is still reported.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

#: Prefix cdk-nag's validation plugin gives its rule ids.
PLUGIN_PREFIX = "AwsSolutions::"


def add_aws_solutions_checks(app: IConstruct) -> None:
    """Run cdk-nag's AwsSolutions pack on every stack of ``app`` at synth (errors fail the synth)."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge AwsSolutions rule ``rule_id`` (e.g. ``"AwsSolutions-S1"``) for ``scope`` and its children."""
    if not reason.strip():
        raise ValueError(f"acknowledging {rule_id} needs a reason")
    Validations.of(scope).acknowledge(Acknowledgment(id=PLUGIN_PREFIX + rule_id, reason=reason))
