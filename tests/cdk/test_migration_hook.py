"""The migration hook as the constructs install it: the Lambda, its settings, network, IAM, its lifecycle-hook entry
and its Docker-free bundle (one reference synth per strategy, shared with the other strategy tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk.assertions import Template

from constructs_lib import WebSocketFargateService
from constructs_lib.bundling import (
    HANDLER_FILES,
    MIGRATION_HOOK_FILES,
    MIGRATION_HOOK_HANDLER,
    MIGRATION_HOOK_MODULES,
    bundle_path,
    module_file,
    package_dir,
)
from constructs_lib.migration_hook import FUNCTION_TIMEOUT, HOOK_SETTINGS
from constructs_lib.service import MIGRATION_HOOK_NEEDS_REGISTRY_ID
from stickyws import migration_hook
from stickyws.audit.checks import MOVE_CONNECTIONS_STAGE, Status, audit
from stickyws.audit.from_template import view_from_template
from stickyws.settings import ENV_REDIS_URL, Settings, env_name
from tests.cdk.strategy_synth import SHIFTING_STRATEGIES, StrategySynth, synth_strategy
from tests.cdk_reference import new_app

pytestmark = pytest.mark.synth

FUNCTION = "AWS::Lambda::Function"
POLICY = "AWS::IAM::Policy"
SERVICE = "AWS::ECS::Service"


@pytest.fixture(scope="module", params=SHIFTING_STRATEGIES)
def shifted(request: pytest.FixtureRequest) -> StrategySynth:
    """The reference app synthesized with -c deployment_strategy=<each traffic-shifting strategy>."""
    return synth_strategy(request.param)


@pytest.fixture(scope="module")
def blue_green() -> StrategySynth:
    """The blue/green reference synth (the hook is the same for linear and canary)."""
    return synth_strategy("blue_green")


def hook_function(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(logical id, Properties)`` of the one migration-hook function."""
    found = [
        (k, r["Properties"])
        for k, r in template["Resources"].items()
        if r["Type"] == FUNCTION and r["Properties"].get("Handler") == MIGRATION_HOOK_HANDLER
    ]
    assert len(found) == 1, f"expected one migration-hook function, found {[k for k, _ in found]}"
    return found[0]


def role_statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """Every policy statement attached to the role ``role_id``."""
    return [
        statement
        for r in template["Resources"].values()
        if r["Type"] == POLICY and {"Ref": role_id} in r["Properties"]["Roles"]
        for statement in r["Properties"]["PolicyDocument"]["Statement"]
    ]


def the_service(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (found,) = [(k, r["Properties"]) for k, r in template["Resources"].items() if r["Type"] == SERVICE]
    return found


# -- the lifecycle hook -------------------------------------------------------------------------------


def test_every_shifting_strategy_runs_the_hook_after_the_production_shift(shifted: StrategySynth) -> None:
    """The service's one lifecycle hook targets the hook function at POST_PRODUCTION_TRAFFIC_SHIFT (and at
    PRODUCTION_TRAFFIC_SHIFT for a rollback), invoked with the hook's own role."""
    template = shifted.template_json
    function_id, _ = hook_function(template)
    _, service = the_service(template)
    (hook,) = service["DeploymentConfiguration"]["LifecycleHooks"]
    assert hook["HookTargetArn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert hook["LifecycleStages"] == ["POST_PRODUCTION_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT"]
    assert tuple(hook["LifecycleStages"]) == migration_hook.STAGES
    role_id = hook["RoleArn"]["Fn::GetAtt"][0]
    assert role_id.startswith("ServiceMigrationHookInvokeRole")
    role = template["Resources"][role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ecs.amazonaws.com"}
    assert role_statements(template, role_id) == [
        {"Action": "lambda:InvokeFunction", "Effect": "Allow", "Resource": {"Fn::GetAtt": [function_id, "Arn"]}}
    ]


def test_hook_closes_no_dependency_cycle(shifted: StrategySynth) -> None:
    """The service names the function and the function's policy names the service by name only: CloudFormation can
    order them (aws-cdk-lib's Template refuses a template with a cycle)."""
    Template.from_json(shifted.template_json)


def test_rolling_service_has_no_hook(reference_template_json: dict[str, Any]) -> None:
    """The rolling reference stack has no migration-hook function and no lifecycle hook."""
    functions = [r for r in reference_template_json["Resources"].values() if r["Type"] == FUNCTION]
    assert not [f for f in functions if f["Properties"].get("Handler") == MIGRATION_HOOK_HANDLER]
    _, service = the_service(reference_template_json)
    assert "LifecycleHooks" not in service["DeploymentConfiguration"]


def test_own_template_passes_the_hook_audit(shifted: StrategySynth) -> None:
    """The audit's deployment-moves-blue-sockets check passes on each traffic-shifting template of the stack."""
    row = audit(view_from_template(shifted.template_json)).result("deployment-moves-blue-sockets")
    assert row.status is Status.PASS
    assert f"a lifecycle hook runs at {MOVE_CONNECTIONS_STAGE}" in row.found


def test_stack_no_longer_warns_that_blue_sockets_are_cut(shifted: StrategySynth) -> None:
    """With the hook installed neither the settings rule nor the service warns about blue's sockets."""
    warnings = [
        str(m.data) for node in shifted.stack.node.find_all() for m in node.node.metadata if m.type == "aws:cdk:warning"
    ]
    assert not any("deployment-moves-connections" in w for w in warnings)
    assert not any(MIGRATION_HOOK_NEEDS_REGISTRY_ID in w for w in warnings)


# -- the function ----------------------------------------------------------------------------------


def test_function_environment_is_the_settings_and_the_registry(blue_green: StrategySynth) -> None:
    """The function gets the four migration settings under the names the handler reads, REDIS_URL and the
    registry's IAM authentication variables, exactly as the drain notifier does."""
    template = blue_green.template_json
    _, props = hook_function(template)
    variables = props["Environment"]["Variables"]
    assert {name: variables[env_name(name)] for name in HOOK_SETTINGS} == {
        "migration_pace_per_s": "200",
        "migration_window_s": "600",
        "drain_window_s": "45",
        "migration_done_connections": "0",
    }
    assert [env_name(n) for n in HOOK_SETTINGS] == [
        migration_hook.PACE_ENV,
        migration_hook.WINDOW_ENV,
        migration_hook.DRAIN_WINDOW_ENV,
        migration_hook.DONE_ENV,
    ]
    (drain,) = [
        r["Properties"]["Environment"]["Variables"]
        for r in template["Resources"].values()
        if r["Type"] == FUNCTION and r["Properties"].get("Handler") == "stickyws.drain_notifier.handler"
    ]
    registry_variables = {k: v for k, v in drain.items() if k == ENV_REDIS_URL or k.startswith("REDIS_")}
    assert set(registry_variables) == {
        "REDIS_URL",
        "REDIS_AUTH",
        "REDIS_USER",
        "REDIS_IAM_CACHE_NAME",
        "REDIS_IAM_SERVERLESS",
    }
    assert {k: variables[k] for k in registry_variables} == registry_variables


def test_function_runs_in_the_vpc_admitted_by_the_registry(blue_green: StrategySynth) -> None:
    """The function has its own security group in the private subnets, and the registry admits that group."""
    template = blue_green.template_json
    _, props = hook_function(template)
    (group,) = props["VpcConfig"]["SecurityGroupIds"]
    group_id = group["Fn::GetAtt"][0]
    assert group_id.startswith("ServiceMigrationHookSecurityGroup")
    assert len(props["VpcConfig"]["SubnetIds"]) == 2
    assert all("PrivateSubnet" in s["Ref"] for s in props["VpcConfig"]["SubnetIds"])
    ingress = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress"
        and r["Properties"].get("SourceSecurityGroupId") == {"Fn::GetAtt": [group_id, "GroupId"]}
    ]
    assert len(ingress) == 1
    assert ingress[0]["GroupId"]["Fn::GetAtt"][0].startswith("RegistrySecurityGroup")
    assert (ingress[0]["FromPort"], ingress[0]["ToPort"]) == (6380, 6380)


def test_function_timeout_runtime_and_memory(blue_green: StrategySynth) -> None:
    """Five minutes (a timeout is a failure, and a failure rolls the deployment back), Python 3.13 on arm64."""
    _, props = hook_function(blue_green.template_json)
    assert props["Timeout"] == FUNCTION_TIMEOUT.to_seconds() == 300
    assert (props["Runtime"], props["Architectures"], props["MemorySize"]) == ("python3.13", ["arm64"], 256)


def test_function_may_read_only_its_clusters_tasks_and_services_deployments(blue_green: StrategySynth) -> None:
    """ListTasks only under the cluster condition, DescribeTasks on the cluster's tasks, the service's deployments,
    and elasticache:Connect on the registry and its user."""
    template = blue_green.template_json
    _, props = hook_function(template)
    role_id = props["Role"]["Fn::GetAtt"][0]
    statements = role_statements(template, role_id)
    by_action = {json.dumps(s["Action"]): s for s in statements}
    (cluster_id,) = [k for k, r in template["Resources"].items() if r["Type"] == "AWS::ECS::Cluster"]
    _, service = the_service(template)
    name = service["ServiceName"]
    in_cluster = {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": [cluster_id, "Arn"]}}}
    assert by_action['"ecs:ListTasks"'] == {
        "Action": "ecs:ListTasks",
        "Condition": in_cluster,
        "Effect": "Allow",
        "Resource": "*",
    }
    describe = by_action['"ecs:DescribeTasks"']
    assert describe["Condition"] == in_cluster
    assert describe["Resource"]["Fn::Join"][1][-3:] == [":task/", {"Ref": cluster_id}, "/*"]
    listed = by_action['"ecs:ListServiceDeployments"']["Resource"]["Fn::Join"][1]
    assert listed[-3:] == [":service/", {"Ref": cluster_id}, f"/{name}"]
    deployments = by_action['"ecs:DescribeServiceDeployments"']["Resource"]["Fn::Join"][1]
    assert deployments[-3:] == [":service-deployment/", {"Ref": cluster_id}, f"/{name}/*"]
    assert set(by_action) == {
        '"ecs:ListTasks"',
        '"ecs:DescribeTasks"',
        '"ecs:ListServiceDeployments"',
        '"ecs:DescribeServiceDeployments"',
        '"elasticache:Connect"',
    }


def test_traffic_shifting_stack_acknowledges_only_the_hooks_wildcards(shifted: StrategySynth) -> None:
    """cdk-nag passes; the hook's acknowledged findings are its three IAM5 wildcards and the AWS-managed Lambda
    policies and runtime, each at the hook's own role or function."""
    report = json.loads((shifted.outdir / "validation-report.json").read_text(encoding="utf-8"))
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert (plugin["conclusion"], plugin["violations"]) == ("success", [])
    at_hook = [
        f["ruleName"].split("[")[0]
        for f in plugin["suppressedViolations"]
        if "/Service/MigrationHook/" in json.dumps(f.get("violatingResources", f))
    ]
    assert sorted(at_hook) == ["AwsSolutions-IAM4"] * 2 + ["AwsSolutions-IAM5"] * 3 + ["AwsSolutions-L1"]


# -- the bundle ------------------------------------------------------------------------------------


def hook_bundle(synth: StrategySynth) -> Path:
    """The staged asset directory of the migration-hook function's code."""
    _, props = hook_function(synth.template_json)
    path = synth.outdir / f"asset.{props['Code']['S3Key'].removesuffix('.zip')}"
    assert path.is_dir(), f"{path} is not staged"
    return path


def test_bundle_holds_the_drain_notifiers_files_the_plan_the_handler_and_redis(blue_green: StrategySynth) -> None:
    """The asset holds the drain notifier's four stickyws files, migration.py, migration_hook.py and redis, nothing
    else of stickyws."""
    bundle = hook_bundle(blue_green)
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    redis_root = package_dir("redis")
    redis_files = {
        "redis/" + p.relative_to(redis_root).as_posix()
        for p in redis_root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert files == set(MIGRATION_HOOK_FILES) | redis_files
    assert set(MIGRATION_HOOK_FILES) - set(HANDLER_FILES) == {"stickyws/migration.py", "stickyws/migration_hook.py"}
    assert [bundle_path(m) for m in MIGRATION_HOOK_MODULES] == list(MIGRATION_HOOK_FILES)
    for name in MIGRATION_HOOK_MODULES:
        assert (bundle / bundle_path(name)).read_bytes() == module_file(name).read_bytes()


def test_bundled_hook_imports_from_the_bundle_alone(blue_green: StrategySynth) -> None:
    """With the bundle as the only extra sys.path entry (no site-packages) the handler imports, from the bundle, and
    answers FAILED for an event without a service (nothing of stickyws beyond the bundle, no aiohttp)."""
    bundle = hook_bundle(blue_green)
    script = (
        "import importlib.util, json, sys\n"
        f"sys.path.insert(0, {str(bundle)!r})\n"
        "import stickyws.migration_hook as m\n"
        "print(json.dumps({'handler': m.__file__,\n"
        "  'modules': sorted(n for n in sys.modules if n.startswith('stickyws')),\n"
        "  'aiohttp': importlib.util.find_spec('aiohttp') is not None,\n"
        "  'result': m.handler({'lifecycleStage': 'POST_PRODUCTION_TRAFFIC_SHIFT'}, None)}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", script],
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["handler"] == str(bundle / "stickyws" / "migration_hook.py")
    assert out["modules"] == sorted(MIGRATION_HOOK_MODULES)
    assert out["aiohttp"] is False
    assert out["result"] == {"hookStatus": "FAILED"}


# -- the construct on its own ----------------------------------------------------------------------


def _service(tmp_path: Path, overrides: dict[str, object], redis_url: str | None) -> WebSocketFargateService:
    app = new_app(tmp_path)
    stack = Stack(app, "Hook")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    return WebSocketFargateService(
        stack,
        "App",
        vpc=vpc,
        settings=Settings().with_overrides(overrides),
        image=ecs.ContainerImage.from_registry("public.ecr.aws/docker/library/python:3.11-slim"),
        redis_url=redis_url,
    )


def test_migration_hook_false_installs_no_hook(tmp_path: Path) -> None:
    """migration_hook=false leaves a blue/green service without the hook (and the settings rule warns instead)."""
    service = _service(tmp_path, {"deployment_strategy": "blue_green", "migration_hook": False}, "rediss://r:6379")
    assert service.migration_hook is None
    config = Template.from_stack(Stack.of(service)).to_json()
    (props,) = [r["Properties"] for r in config["Resources"].values() if r["Type"] == SERVICE]
    assert "LifecycleHooks" not in props["DeploymentConfiguration"]


def test_hook_without_a_registry_is_not_installed_and_warns(tmp_path: Path) -> None:
    """Without redis_url the hook could never move a client: none is installed, and a warning says what to pass."""
    service = _service(tmp_path, {"deployment_strategy": "canary"}, None)
    assert service.migration_hook is None
    warnings = [str(m.data) for m in service.node.metadata if m.type == "aws:cdk:warning"]
    assert len(warnings) == 1
    assert "migration_hook=true but the service has no registry (redis_url)" in warnings[0]


def test_hook_settings_follow_the_model(tmp_path: Path) -> None:
    """Non-default pace, window, drain window and done threshold reach the function's environment unchanged."""
    service = _service(
        tmp_path,
        {
            "deployment_strategy": "linear",
            "migration_pace_per_s": 37.5,
            "migration_window_s": 1200,
            "drain_window_s": 20,
            "migration_done_connections": 3,
        },
        "rediss://r:6379",
    )
    assert service.migration_hook is not None
    Template.from_stack(Stack.of(service)).has_resource_properties(
        FUNCTION,
        {
            "Handler": MIGRATION_HOOK_HANDLER,
            "Environment": {
                "Variables": {
                    "STICKYWS_MIGRATION_PACE_PER_S": "37.5",
                    "STICKYWS_MIGRATION_WINDOW_S": "1200",
                    "STICKYWS_DRAIN_WINDOW_S": "20",
                    "STICKYWS_MIGRATION_DONE_CONNECTIONS": "3",
                    "REDIS_URL": "rediss://r:6379",
                }
            },
        },
    )
