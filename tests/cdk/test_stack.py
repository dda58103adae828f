"""The reference stack and app.py: composition, outputs, context handling and clean settings errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import app as cdk_app
from constructs_lib import CONTAINER_NAME
from stacks import Outputs
from stickyws.settings import SettingsError
from tests.cdk_reference import REPO_ROOT, new_app

pytestmark = pytest.mark.synth


def _ids(template_json: dict[str, Any], type_: str) -> list[str]:
    return [k for k, r in template_json["Resources"].items() if r["Type"] == type_]


def _warnings(construct: Any) -> list[str]:
    return [str(m.data) for m in construct.node.metadata if m.type == "aws:cdk:warning"]


# -- composition -------------------------------------------------------------------------------------


def test_service_is_registered_with_the_target_group(reference_template_json: dict[str, Any]) -> None:
    """The Fargate service registers its `server` container on the settings' port with the sticky target group."""
    (service_id,) = _ids(reference_template_json, "AWS::ECS::Service")
    (tg_id,) = _ids(reference_template_json, "AWS::ElasticLoadBalancingV2::TargetGroup")
    service = reference_template_json["Resources"][service_id]["Properties"]
    assert service["LoadBalancers"] == [
        {"ContainerName": CONTAINER_NAME, "ContainerPort": 8080, "TargetGroupArn": {"Ref": tg_id}}
    ]


def test_service_admits_only_the_load_balancer_on_its_port(reference_template_json: dict[str, Any]) -> None:
    """The service's security group admits the ALB's security group on 8080 and nothing else."""
    resources = reference_template_json["Resources"]
    (service_id,) = _ids(reference_template_json, "AWS::ECS::Service")
    service_sg = resources[service_id]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    (alb_id,) = _ids(reference_template_json, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    alb_sg = resources[alb_id]["Properties"]["SecurityGroups"]
    ingress = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress" and r["Properties"]["GroupId"] == service_sg[0]
    ]
    assert len(ingress) == 1
    assert ingress[0]["SourceSecurityGroupId"] == alb_sg[0]
    assert (ingress[0]["FromPort"], ingress[0]["ToPort"], ingress[0]["IpProtocol"]) == (8080, 8080, "tcp")


def test_registry_admits_the_service_and_the_drain_notifier(reference_template_json: dict[str, Any]) -> None:
    """The registry's security group admits exactly the service and the drain-notifier function."""
    resources = reference_template_json["Resources"]
    (group_id,) = _ids(reference_template_json, "AWS::ElastiCache::ReplicationGroup")
    registry_sg = resources[group_id]["Properties"]["SecurityGroupIds"][0]
    sources = sorted(
        r["Properties"]["SourceSecurityGroupId"]["Fn::GetAtt"][0]
        for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress" and r["Properties"]["GroupId"] == registry_sg
    )
    assert len(sources) == 2
    assert any("DrainNotifier" in s for s in sources)
    assert any(s.startswith("Service") for s in sources)


def test_outputs_name_every_endpoint(reference_template_json: dict[str, Any]) -> None:
    """The stack outputs the HTTPS and wss:// URLs, ALB and target group ARNs, cluster, service and registry."""
    outputs = reference_template_json["Outputs"]
    resources = reference_template_json["Resources"]
    (alb_id,) = _ids(reference_template_json, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    (tg_id,) = _ids(reference_template_json, "AWS::ElasticLoadBalancingV2::TargetGroup")
    (cluster_id,) = _ids(reference_template_json, "AWS::ECS::Cluster")
    (service_id,) = _ids(reference_template_json, "AWS::ECS::Service")
    (group_id,) = _ids(reference_template_json, "AWS::ElastiCache::ReplicationGroup")
    dns = {"Fn::GetAtt": [alb_id, "DNSName"]}
    assert outputs[Outputs.URL]["Value"] == {"Fn::Join": ["", ["https://", dns]]}
    assert outputs[Outputs.WEBSOCKET_URL]["Value"] == {"Fn::Join": ["", ["wss://", dns, "/ws"]]}
    assert outputs[Outputs.LOAD_BALANCER_ARN]["Value"] == {"Ref": alb_id}
    assert outputs[Outputs.TARGET_GROUP_ARN]["Value"] == {"Ref": tg_id}
    assert outputs[Outputs.CLUSTER_NAME]["Value"] == {"Ref": cluster_id}
    assert outputs[Outputs.SERVICE_NAME]["Value"] == {"Fn::GetAtt": [service_id, "Name"]}
    assert outputs[Outputs.REGISTRY_ENDPOINT]["Value"] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [group_id, "PrimaryEndPoint.Address"]}, ":6380"]]
    }
    assert resources[group_id]["Properties"]["TransitEncryptionEnabled"] is True


def test_reference_stack_is_environment_agnostic(reference_template_json: dict[str, Any], reference_stack: Any) -> None:
    """Without account/region context the stack has no fixed region and its subnets pick AZs at deploy time."""
    from aws_cdk import Token

    assert Token.is_unresolved(reference_stack.region)
    subnets = [reference_template_json["Resources"][k] for k in _ids(reference_template_json, "AWS::EC2::Subnet")]
    assert all("Fn::Select" in s["Properties"]["AvailabilityZone"] for s in subnets)


# -- app.py: context --------------------------------------------------------------------------------------


def test_default_synth_is_the_http_only_demo_with_a_warning(tmp_path: Path) -> None:
    """With no context at all, app.build chooses the HTTP-only demo mode and warns about it twice (app, construct)."""
    stack = cdk_app.build(new_app(tmp_path))
    assert stack.web.http_only is True
    assert stack.web.websocket_url.startswith("ws://")
    assert any("HTTP-only DEMO mode" in w and "certificate_arn" in w for w in _warnings(stack))
    assert any("HTTP-only demo mode" in w for w in _warnings(stack.web))


def test_account_and_region_come_with_offline_availability_zones(tmp_path: Path) -> None:
    """account + region context fix the env and supply the AZs as context, so no lookup is attempted."""
    context = {"account": "123456789012", "region": "eu-west-1", "availability_zones": "eu-west-1b,eu-west-1c"}
    application = new_app(tmp_path, context)
    stack = cdk_app.build(application)
    assert (stack.account, stack.region) == ("123456789012", "eu-west-1")
    assert application.node.try_get_context("availability-zones:account=123456789012:region=eu-west-1") == [
        "eu-west-1b",
        "eu-west-1c",
    ]
    assert stack.availability_zones == ["eu-west-1b", "eu-west-1c"]
    assert stack.vpc.availability_zones == ["eu-west-1b", "eu-west-1c"]


def test_availability_zones_default_to_a_and_b() -> None:
    """Without availability_zones the zones are <region>a and <region>b."""
    assert cdk_app.availability_zones_context({"account": "1", "region": "us-east-2"}) == {
        "availability-zones:account=1:region=us-east-2": ["us-east-2a", "us-east-2b"]
    }


@pytest.mark.parametrize(
    ("context", "named"),
    [
        ({"account": "123456789012"}, "pass both -c account=ID -c region=NAME"),
        ({"http_only": "maybe"}, "http_only='maybe' is not true or false"),
        ({"http_only": "false"}, "certificate_arn"),
        ({"hosted_zone_id": "Z1"}, "hosted_zone_name"),
        ({"server_mode": "own"}, "compose the constructs with your image in your own CDK app"),
    ],
)
def test_bad_deployment_options_are_settings_errors(tmp_path: Path, context: dict[str, str], named: str) -> None:
    """Deployment options that cannot work raise SettingsError with the fix, which app.py prints cleanly."""
    with pytest.raises(SettingsError, match=named.replace("(", r"\(")):
        cdk_app.build(new_app(tmp_path, context))


def test_settings_error_stops_the_synth_without_a_traceback(tmp_path: Path) -> None:
    """`python app.py` with bad settings in CDK_CONTEXT_JSON exits 1 and names each setting and its fix."""
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps({"ping_interval_s": "100", "deregistration_delay_s": "30"}),
        "CDK_OUTDIR": str(tmp_path),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    assert "ping_interval_s=100 > idle_timeout_s/2=60" in done.stderr
    assert "set ping_interval_s <= 60 or idle_timeout_s >= 200" in done.stderr
    assert "drain_window_s=45 > deregistration_delay_s=30" in done.stderr
    assert "set drain_window_s <= 30 or deregistration_delay_s >= 45" in done.stderr
    assert not (tmp_path / "StickyWebSocketStack.template.json").exists()


def test_cli_synth_with_no_context_writes_the_demo_template(tmp_path: Path) -> None:
    """`npx --no-install cdk synth --quiet` (what `make synth` runs) succeeds offline with no context, with the
    built-in CloudFormation validation ON (the CLI default) and cdk-nag, and writes the HTTP-only demo template."""
    env = {
        **os.environ,
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "PATH": f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("CDK_CONTEXT_JSON", None)
    done = subprocess.run(
        ["npx", "--no-install", "cdk", "synth", "--quiet", "--output", str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "HTTP-only DEMO mode" in output
    assert "Traceback" not in output
    template = json.loads((tmp_path / f"{cdk_app.STACK_ID}.template.json").read_text(encoding="utf-8"))
    listeners = [r for r in template["Resources"].values() if r["Type"] == "AWS::ElasticLoadBalancingV2::Listener"]
    assert [(r["Properties"]["Port"], r["Properties"]["Protocol"]) for r in listeners] == [(80, "HTTP")]
    assert template["Outputs"][Outputs.WEBSOCKET_URL]["Value"]["Fn::Join"][1][0] == "ws://"
    report = json.loads((tmp_path / "validation-report.json").read_text(encoding="utf-8"))
    assert [p["conclusion"] for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"] == ["success"]


def test_context_and_settings_file_reach_the_template(tmp_path: Path) -> None:
    """`-c` values (strings, as the CLI passes them) over a settings file reach the ALB, the target group and the
    container environment."""
    from aws_cdk.assertions import Template

    settings_file = tmp_path / "settings.toml"
    settings_file.write_text('idle_timeout_s = 200\nstickiness_type = "app_cookie"\napp_cookie_name = "WSSESSION"\n')
    context = {
        "settings_file": str(settings_file),
        "idle_timeout_s": "300",
        "deregistration_delay_s": "90",
        "http_only": "true",
    }
    stack = cdk_app.build(new_app(tmp_path / "out", context))
    template_json = Template.from_stack(stack).to_json()
    resources = template_json["Resources"]

    def attributes(type_: str, key: str) -> dict[str, Any]:
        (resource_id,) = _ids(template_json, type_)
        return {a["Key"]: a["Value"] for a in resources[resource_id]["Properties"][key]}

    assert (
        attributes("AWS::ElasticLoadBalancingV2::LoadBalancer", "LoadBalancerAttributes")[
            "idle_timeout.timeout_seconds"
        ]
        == "300"
    )
    tg = attributes("AWS::ElasticLoadBalancingV2::TargetGroup", "TargetGroupAttributes")
    assert tg["deregistration_delay.timeout_seconds"] == "90"
    assert (tg["stickiness.type"], tg["stickiness.app_cookie.cookie_name"]) == ("app_cookie", "WSSESSION")
    (task_id,) = _ids(template_json, "AWS::ECS::TaskDefinition")
    (container,) = resources[task_id]["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["STICKYWS_IDLE_TIMEOUT_S"] == "300"
    assert env["STICKYWS_DEREGISTRATION_DELAY_S"] == "90"
    assert env["STICKYWS_STICKINESS_TYPE"] == "app_cookie"
