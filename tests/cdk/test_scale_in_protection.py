"""Scale-in protection in the stack: the task role may protect the service's tasks when the setting is on, only then.

The reference template (one synth per session) has ``scale_in_protection`` on, its default; one small
stack with the setting off is synthesized once for this module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from constructs_lib.service import TASK_PROTECTION_ACTIONS
from stickyws.settings import Settings

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


def _task_role_statements(template_json: dict[str, Any]) -> list[dict[str, Any]]:
    """Every policy statement attached to the ECS task definition's task role."""
    resources = template_json["Resources"]
    (task_def,) = [r for r in resources.values() if r["Type"] == "AWS::ECS::TaskDefinition"]
    role_id = task_def["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = []
    for resource in resources.values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        if {"Ref": role_id} in resource["Properties"]["Roles"]:
            statements += resource["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _protection_statements(template_json: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        s
        for s in _task_role_statements(template_json)
        if set(s["Action"] if isinstance(s["Action"], list) else [s["Action"]]) & set(TASK_PROTECTION_ACTIONS)
    ]


@pytest.fixture(scope="module")
def template_without_protection(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A stack holding only the service, with ``scale_in_protection`` off (one synth)."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk.assertions import Template

    from constructs_lib.service import WebSocketFargateService

    app = App(outdir=str(tmp_path_factory.mktemp("no-protection")))
    stack = Stack(app, "NoProtection")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    settings = Settings().with_overrides({"scale_in_protection": False})
    WebSocketFargateService(stack, "Ws", vpc=vpc, settings=settings, redis_url="redis://registry.internal:6379")
    return Template.from_stack(stack).to_json()  # type: ignore[no-any-return]


def test_the_task_role_may_protect_the_tasks_of_its_cluster(reference_template_json: dict[str, Any]) -> None:
    """GIVEN the default settings WHEN synthesized THEN the task role may protect task/<cluster>/* and read it."""
    (statement,) = _protection_statements(reference_template_json)
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == sorted(TASK_PROTECTION_ACTIONS)
    joined = statement["Resource"]["Fn::Join"][1]
    assert joined[-1] == "/*"
    assert any(isinstance(part, str) and part.endswith(":task/") for part in joined)
    assert any(part == {"Ref": cluster} for part in joined for cluster in _cluster_ids(reference_template_json))


def _cluster_ids(template_json: dict[str, Any]) -> list[str]:
    return [k for k, v in template_json["Resources"].items() if v["Type"] == "AWS::ECS::Cluster"]


def test_the_permission_is_acknowledged_in_the_nag_report(reference_outdir: Path) -> None:
    """GIVEN the reference synth THEN cdk-nag's wildcard finding on the task ARN is acknowledged with its reason."""
    report = json.loads((reference_outdir / "validation-report.json").read_text(encoding="utf-8"))
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    reasons = [f["reason"] for f in plugin["suppressedViolations"] if "Scale-in protection" in f["reason"]]
    assert reasons
    assert not [v for v in plugin["violations"] if "IAM5" in json.dumps(v)]


def test_no_protection_permission_when_the_setting_is_off(template_without_protection: dict[str, Any]) -> None:
    """GIVEN scale_in_protection=false WHEN synthesized THEN the task role has no task-protection permission."""
    assert _protection_statements(template_without_protection) == []
    text = json.dumps(template_without_protection)
    assert [action for action in TASK_PROTECTION_ACTIONS if action in text] == []
