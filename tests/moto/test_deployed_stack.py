"""The synthesized reference stack deployed into moto: audited live, values read back, mutations caught.

One moto account for the module, from the stickyws pytest plugin (``stickyws_moto`` deploys the
reference template, see tests/moto/conftest.py): the reference stack and one stack per mutation are
deployed once (with the workarounds of stickyws.testing.moto_compat), and every test reads them
through boto3.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from stickyws.audit.checks import Audit, Status, audit, catalog
from stickyws.audit.from_aws import read_stack
from stickyws.audit.mapping import INFRA_SETTINGS, REGISTRY_FIELDS
from stickyws.audit.report import render_table
from stickyws.cli import main
from stickyws.testing import MotoDeployment, NotWebSocketReady, assert_websocket_ready
from stickyws.testing.aws_env import REGION
from stickyws.testing.moto_compat import create_stack
from tests.audit.edits import DEPLOYABLE_MUTATIONS, container_settings, only, server_container

pytestmark = [pytest.mark.synth, pytest.mark.filterwarnings("ignore:Tried to parse AWS::")]

GOOD = "StickyWebSocketStack"
RAW = "RawMotoStack"


@dataclass(frozen=True)
class Deployed:
    """The module's moto account: stack names and the physical ids of the reference stack."""

    session: Any
    physical: dict[str, str]
    template: dict[str, Any]


@pytest.fixture(scope="module")
def deployed(stickyws_moto: MotoDeployment, stickyws_deploy: Any, reference_template_json: dict[str, Any]) -> Deployed:
    """The reference stack, one stack per mutation, and the reference without workarounds, in one mock."""
    assert stickyws_moto.stack_name == GOOD
    for mutation in DEPLOYABLE_MUTATIONS:
        stickyws_deploy(mutation.edit(reference_template_json), f"Mutated-{mutation.name}")
    create_stack(stickyws_moto.session, reference_template_json, RAW)
    return Deployed(stickyws_moto.session, dict(stickyws_moto.physical), reference_template_json)


#: moto's CloudFormation cannot create ElastiCache resources (moto_compat.UNDEPLOYABLE_TYPES), so a deployed
#: stack has no registry to read and its check warns.
MOTO_REGISTRY_WARNING = (
    "registry-encryption-and-auth",
    "warn",
    "no registry read (an existing endpoint, or a live audit without the stack)",
)
NO_REGISTRY_NOTE = "no ElastiCache registry named or in the stack (not read)"
REGISTRY_SETTINGS = {name for name, _, _ in REGISTRY_FIELDS}


def _audit(deployed: Deployed, stack: str) -> Audit:
    return audit(read_stack(deployed.session, stack))


def test_reference_stack_passes_every_rule_in_moto(deployed: Deployed) -> None:
    """Read back from moto through boto3, the deployed reference stack passes every rule and check but the
    registry's, which moto cannot deploy (a warning that says so)."""
    result = _audit(deployed, GOOD)
    assert [(r.rule, r.status.value, r.found) for r in result.results if r.status is not Status.PASS] == [
        MOTO_REGISTRY_WARNING
    ]
    assert result.exit_code == 0
    assert result.notes == (NO_REGISTRY_NOTE,)
    assert sorted(n for n, o in result.observed.items() if o.aws_default) == []
    # app_cookie_name is read only with stickiness.type=app_cookie; the registry is not in moto's stack.
    assert set(result.observed) == INFRA_SETTINGS - {"app_cookie_name"} - REGISTRY_SETTINGS


def test_values_read_back_equal_the_template(deployed: Deployed) -> None:
    """Every audited value read from moto equals the template's, including those unlike moto's defaults."""
    elbv2, ecs = deployed.session.client("elbv2"), deployed.session.client("ecs")
    template = deployed.template
    types = {logical: r["Type"] for logical, r in template["Resources"].items()}

    def physical_of(kind: str) -> str:
        return next(p for logical, p in deployed.physical.items() if types.get(logical) == kind)

    lb_arn = physical_of("AWS::ElasticLoadBalancingV2::LoadBalancer")
    tg_arn = physical_of("AWS::ElasticLoadBalancingV2::TargetGroup")
    lb_attrs = {
        a["Key"]: a["Value"] for a in elbv2.describe_load_balancer_attributes(LoadBalancerArn=lb_arn)["Attributes"]
    }
    tg_attrs = {
        a["Key"]: a["Value"] for a in elbv2.describe_target_group_attributes(TargetGroupArn=tg_arn)["Attributes"]
    }
    tg = elbv2.describe_target_groups(TargetGroupArns=[tg_arn])["TargetGroups"][0]
    cluster, service_arn = physical_of("AWS::ECS::Cluster"), physical_of("AWS::ECS::Service")
    service = ecs.describe_services(cluster=cluster, services=[service_arn])["services"][0]
    task = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    server = next(c for c in task["containerDefinitions"] if c["name"] == server_container(template)["Name"])

    # moto's defaults would read idle 60 / http2 absent / dereg 300 / stickiness false / healthy 5 /
    # unhealthy 2 / no deployment configuration: every value below differs from them.
    read = {
        "idle_timeout_s": lb_attrs["idle_timeout.timeout_seconds"],
        "http2_enabled": lb_attrs["routing.http2.enabled"],
        "drop_invalid_header_fields": lb_attrs["routing.http.drop_invalid_header_fields.enabled"],
        "deregistration_delay_s": tg_attrs["deregistration_delay.timeout_seconds"],
        "stickiness_enabled": tg_attrs["stickiness.enabled"],
        "stickiness_type": tg_attrs["stickiness.type"],
        "stickiness_duration_s": tg_attrs["stickiness.lb_cookie.duration_seconds"],
        "health_check_path": tg["HealthCheckPath"],
        "healthy_threshold_count": tg["HealthyThresholdCount"],
        "unhealthy_threshold_count": tg["UnhealthyThresholdCount"],
        "stop_timeout_s": server["stopTimeout"],
        "task_cpu": task["cpu"],
        "min_healthy_percent": service["deploymentConfiguration"]["minimumHealthyPercent"],
        "max_percent": service["deploymentConfiguration"]["maximumPercent"],
        "health_check_grace_s": service["healthCheckGracePeriodSeconds"],
    }
    assert read == {
        "idle_timeout_s": "120",
        "http2_enabled": "false",
        "drop_invalid_header_fields": "true",
        "deregistration_delay_s": "60",
        "stickiness_enabled": "true",
        "stickiness_type": "lb_cookie",
        "stickiness_duration_s": "86400",
        "health_check_path": "/health",
        "healthy_threshold_count": 2,
        "unhealthy_threshold_count": 3,
        "stop_timeout_s": 30,
        "task_cpu": "512",
        "min_healthy_percent": 100,
        "max_percent": 200,
        "health_check_grace_s": 60,
    }
    rendered = container_settings(template)
    assert {name: str(value).lower() for name, value in read.items()} == {
        name: str(rendered[name]).lower() for name in read
    }, "the values read back are not the ones the template rendered into the container"
    assert service["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert [m["containerName"] for m in service["loadBalancers"] if m["targetGroupArn"] == tg_arn] == [server["name"]]
    assert only(template, "AWS::ElasticLoadBalancingV2::TargetGroup")["HealthCheckPath"] == "/health"


def test_moto_without_the_workarounds_fails_the_audit(deployed: Deployed) -> None:
    """Deployed by moto's CloudFormation alone, the stack fails the audit: the auditor never passes moto's defaults."""
    result = _audit(deployed, RAW)
    assert result.failed() == [
        "http2-off",
        "stickiness",
        "service-behind-target-group",
        "deployment-circuit-breaker",
        "task-ingress-from-alb-only",
        "app-settings-match",
    ]
    assert result.observed["http2_enabled"].aws_default is True
    assert result.observed["deregistration_delay_s"].text == "300"


@pytest.mark.parametrize("mutation", DEPLOYABLE_MUTATIONS, ids=lambda m: m.name)
def test_deployed_mutation_fails_its_rule_with_exit_code_1(
    deployed: Deployed, mutation: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stickyws audit --stack-name` on a broken stack in moto exits 1, failing exactly the expected rules."""
    code = main(["audit", "--stack-name", f"Mutated-{mutation.name}", "--region", REGION, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["exit_code"] == 1
    assert {r["rule"] for r in report["results"] if r["status"] == "fail"} == mutation.failing


def test_cli_exit_code_zero_for_the_reference_stack(deployed: Deployed, capsys: pytest.CaptureFixture[str]) -> None:
    """`stickyws audit --stack-name` on the deployed reference stack exits 0 and prints the summary line."""
    code = main(["audit", "--stack-name", GOOD, "--region", REGION])
    out = capsys.readouterr().out
    assert code == 0
    assert out.rstrip().endswith(f"{len(catalog()) - 1} pass, 1 warn, 0 fail (exit 0)")


def test_assert_websocket_ready_passes_the_reference_and_fails_a_broken_stack_with_the_table(
    deployed: Deployed, stickyws_moto: MotoDeployment
) -> None:
    """assert_websocket_ready returns the deployed reference stack's audit and fails on a broken one with its table."""
    assert assert_websocket_ready(stickyws_moto).exit_code == 0
    broken = next(m for m in DEPLOYABLE_MUTATIONS if m.name == "stickiness-off")
    with pytest.raises(NotWebSocketReady) as caught:
        assert_websocket_ready(MotoDeployment(deployed.session, f"Mutated-{broken.name}", deployed.template, {}))
    failed = caught.value.audit.failed()
    assert set(failed) == broken.failing
    assert str(caught.value) == (
        f"stack Mutated-{broken.name} is not WebSocket-ready: {', '.join(failed)} failed\n"
        + render_table(caught.value.audit)
    )
