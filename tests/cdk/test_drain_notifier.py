"""DrainNotifier: the EventBridge rule, the VPC Lambda, its dead-letter queue and its Docker-free bundle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from constructs_lib.bundling import HANDLER_FILES, HANDLER_MODULES, bundle_path, module_file, package_dir
from stickyws.keys import drain_key
from stickyws.settings import ENV_REDIS_URL
from tests.cdk.test_service import drain_function, only, variant


def resources_of(template_json: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """``{logical id: Properties}`` of every resource of ``resource_type``."""
    return {k: v.get("Properties", {}) for k, v in template_json["Resources"].items() if v["Type"] == resource_type}


def drain_rule(template_json: dict[str, Any]) -> dict[str, Any]:
    """Properties of the one rule that matches ECS task state changes."""
    rules = [
        p
        for p in resources_of(template_json, "AWS::Events::Rule").values()
        if p["EventPattern"]["source"] == ["aws.ecs"]
    ]
    assert len(rules) == 1
    return rules[0]


def test_rule_matches_this_services_stopping_tasks(reference_template_json: dict[str, Any]) -> None:
    """The rule matches ECS Task State Change events of this cluster and service with desiredStatus STOPPED."""
    cluster_id, _ = only(reference_template_json, "AWS::ECS::Cluster")
    service_id, _ = only(reference_template_json, "AWS::ECS::Service")
    assert drain_rule(reference_template_json)["EventPattern"] == {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {
            "clusterArn": [{"Fn::GetAtt": [cluster_id, "Arn"]}],
            "group": [{"Fn::Join": ["", ["service:", {"Fn::GetAtt": [service_id, "Name"]}]]}],
            "desiredStatus": ["STOPPED"],
        },
    }


def test_rule_target_retries_then_dead_letters(reference_template_json: dict[str, Any]) -> None:
    """The rule's target is the function, retried twice within an hour, then sent to the dead-letter queue."""
    function_id, _ = drain_function(reference_template_json)
    (queue_id,) = resources_of(reference_template_json, "AWS::SQS::Queue")
    (target,) = drain_rule(reference_template_json)["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600}


def test_function_settings(reference_template_json: dict[str, Any]) -> None:
    """Python 3.13 on arm64, the handler, 30 s / 256 MB, the registry's URL and IAM auth, DLQ, own log group."""
    _, fn = drain_function(reference_template_json)
    (queue_id,) = resources_of(reference_template_json, "AWS::SQS::Queue")
    rg_id, _ = only(reference_template_json, "AWS::ElastiCache::ReplicationGroup")
    assert (fn["Runtime"], fn["Architectures"], fn["Handler"]) == (
        "python3.13",
        ["arm64"],
        "stickyws.drain_notifier.handler",
    )
    assert (fn["Timeout"], fn["MemorySize"]) == (30, 256)
    _, user = only(reference_template_json, "AWS::ElastiCache::User", where={"AuthenticationMode": {"Type": "iam"}})
    assert fn["Environment"] == {
        "Variables": {
            ENV_REDIS_URL: {
                "Fn::Join": ["", ["rediss://", {"Fn::GetAtt": [rg_id, "PrimaryEndPoint.Address"]}, ":6380"]]
            },
            "REDIS_AUTH": "iam",
            "REDIS_USER": user["UserId"],
            "REDIS_IAM_CACHE_NAME": {"Ref": rg_id},
            "REDIS_IAM_SERVERLESS": "false",
        }
    }
    assert fn["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    log_group_id = fn["LoggingConfig"]["LogGroup"]["Ref"]
    assert reference_template_json["Resources"][log_group_id]["Properties"]["RetentionInDays"] == 30


def test_function_runs_in_private_subnets_with_own_security_group(reference_template_json: dict[str, Any]) -> None:
    """The function runs in the private subnets with its own security group, which has no ingress."""
    _, fn = drain_function(reference_template_json)
    (sg_ref,) = fn["VpcConfig"]["SecurityGroupIds"]
    sg = reference_template_json["Resources"][sg_ref["Fn::GetAtt"][0]]["Properties"]
    assert "SecurityGroupIngress" not in sg
    assert len(fn["VpcConfig"]["SubnetIds"]) == 2
    for subnet in fn["VpcConfig"]["SubnetIds"]:
        assert "Private" in subnet["Ref"]


def test_async_invocation_retries_then_dead_letters(reference_template_json: dict[str, Any]) -> None:
    """A failed invocation (Redis down) is retried twice within an hour before it lands in the DLQ."""
    function_id, _ = drain_function(reference_template_json)
    configs = resources_of(reference_template_json, "AWS::Lambda::EventInvokeConfig")
    assert list(configs.values()) == [
        {
            "FunctionName": {"Ref": function_id},
            "MaximumEventAgeInSeconds": 3600,
            "MaximumRetryAttempts": 2,
            "Qualifier": "$LATEST",
        }
    ]


def test_dead_letter_queue_is_encrypted_and_tls_only(reference_template_json: dict[str, Any]) -> None:
    """The DLQ is encrypted with a rotated customer-managed key, keeps messages 14 days and refuses non-TLS requests."""
    ((queue_id, queue),) = resources_of(reference_template_json, "AWS::SQS::Queue").items()
    key_id, key = only(reference_template_json, "AWS::KMS::Key")
    assert queue == {"KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}, "MessageRetentionPeriod": 1209600}
    assert key["EnableKeyRotation"] is True
    policies = [
        p for p in resources_of(reference_template_json, "AWS::SQS::QueuePolicy").values()
        if {"Ref": queue_id} in p["Queues"]
    ]  # fmt: skip
    statements = [s for p in policies for s in p["PolicyDocument"]["Statement"]]
    deny = [s for s in statements if s["Effect"] == "Deny"]
    assert len(deny) == 1
    assert deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny[0]["Action"] == "sqs:*"
    allow = [s for s in statements if s["Effect"] == "Allow"]
    assert [s["Principal"] for s in allow] == [{"Service": "events.amazonaws.com"}]
    assert allow[0]["Action"] == "sqs:SendMessage"


def test_dead_letter_key_admits_only_this_rule_and_the_function(reference_template_json: dict[str, Any]) -> None:
    """EventBridge may use the DLQ key only for this rule; the function's role may encrypt with it; nobody else."""
    key_id, key = only(reference_template_json, "AWS::KMS::Key")
    statements = key["KeyPolicy"]["Statement"]
    events_statements = [s for s in statements if s["Principal"] == {"Service": "events.amazonaws.com"}]
    assert len(statements) == 2  # the account's key administrators (CDK's default) and EventBridge
    (grant,) = events_statements
    assert grant["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    rule_name = drain_rule(reference_template_json)["Name"]
    source = grant["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Join"][1]
    assert source[-1] == f":rule/{rule_name}"
    _, fn = drain_function(reference_template_json)
    role_id = fn["Role"]["Fn::GetAtt"][0]
    role_statements = [
        s
        for p in resources_of(reference_template_json, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Roles"]
        for s in p["PolicyDocument"]["Statement"]
    ]
    assert {"Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [key_id, "Arn"]}} in role_statements  # fmt: skip


def test_variant_retry_attempts_reach_both_retry_policies() -> None:
    """retry_attempts=1 is rendered on the rule target and on the function's invoke config."""
    v = variant()
    (target,) = drain_rule(v.json)["Targets"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 1
    (config,) = resources_of(v.json, "AWS::Lambda::EventInvokeConfig").values()
    assert config["MaximumRetryAttempts"] == 1
    assert drain_rule(v.json)["EventPattern"]["detail"]["clusterArn"] == [
        "arn:aws:ecs:eu-west-1:123456789012:cluster/shared"
    ]


def test_retry_attempts_out_of_range_is_refused() -> None:
    """retry_attempts outside Lambda's 0-2 fails in the constructor."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_ecs as ecs

    from constructs_lib.drain_notifier import DrainNotifier

    stack = Stack(App(), "Invalid")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2)
    cluster = ecs.Cluster(stack, "Cluster", vpc=vpc)
    task = ecs.FargateTaskDefinition(stack, "Task")
    task.add_container("c", image=ecs.ContainerImage.from_registry("example"))
    service = ecs.FargateService(stack, "Service", cluster=cluster, task_definition=task)
    with pytest.raises(ValueError, match="retry_attempts=3 is outside Lambda's range 0-2"):
        DrainNotifier(
            stack, "Drain", vpc=vpc, cluster=cluster, service=service, registry_url="redis://x:1", retry_attempts=3
        )


# -- the bundle ------------------------------------------------------------------------------------


def bundle_dir(outdir: Path, template_json: dict[str, Any]) -> Path:
    """The staged asset directory of the drain-notifier function's code."""
    _, fn = drain_function(template_json)
    asset_hash = fn["Code"]["S3Key"].removesuffix(".zip")
    path = outdir / f"asset.{asset_hash}"
    assert path.is_dir(), f"{path} is not staged"
    return path


def test_bundle_holds_exactly_the_handler_and_redis(
    reference_outdir: Path, reference_template_json: dict[str, Any]
) -> None:
    """The Lambda asset holds the three stickyws files and the redis package, nothing else (no aiohttp, no settings)."""
    bundle = bundle_dir(reference_outdir, reference_template_json)
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    redis_root = package_dir("redis")
    redis_files = {
        "redis/" + p.relative_to(redis_root).as_posix()
        for p in redis_root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert files == set(HANDLER_FILES) | redis_files
    assert set(HANDLER_FILES) == {
        "stickyws/__init__.py",
        "stickyws/compiled.py",
        "stickyws/keys.py",
        "stickyws/registry_auth.py",
        "stickyws/drain_notifier.py",
    }
    assert "redis/__init__.py" in files
    assert [bundle_path(m) for m in HANDLER_MODULES] == list(HANDLER_FILES)
    for name in HANDLER_MODULES:
        assert (bundle / bundle_path(name)).read_bytes() == module_file(name).read_bytes()


@pytest.mark.redis
def test_bundled_handler_runs_from_the_bundle_alone(
    reference_outdir: Path, reference_template_json: dict[str, Any], redis_url: str
) -> None:
    """With the bundle as the only extra sys.path entry (no site-packages) the handler imports and publishes."""
    bundle = bundle_dir(reference_outdir, reference_template_json)
    event = {
        "source": "aws.ecs",
        "detail-type": "ECS Task State Change",
        "detail": {
            "taskArn": "arn:aws:ecs:eu-west-1:123456789012:task/c/bundled0task",
            "desiredStatus": "STOPPED",
            "stoppedReason": "Task stopped by user",
        },
    }
    script = (
        "import importlib.util, json, sys\n"
        f"sys.path.insert(0, {str(bundle)!r})\n"
        "import redis, stickyws.drain_notifier as m\n"
        "print(json.dumps({'redis': redis.__file__, 'handler': m.__file__,\n"
        "  'aiohttp': importlib.util.find_spec('aiohttp') is not None,\n"
        "  'settings': importlib.util.find_spec('stickyws.settings') is not None,\n"
        f"  'result': m.handler(json.loads({json.dumps(event)!r}), None)}}))\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), ENV_REDIS_URL: redis_url}
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["redis"].startswith(str(bundle))
    assert out["handler"] == str(bundle / "stickyws" / "drain_notifier.py")
    assert (out["aiohttp"], out["settings"]) == (False, False)
    assert out["result"] == {
        "status": "published",
        "serverId": "bundled0task",
        "key": "ws:drain:bundled0task",
        "subscribers": 0,
    }
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert json.loads(client.get(drain_key("bundled0task")) or "{}")["reason"] == "Task stopped by user"
    finally:
        client.close()


# -- cdk-nag ---------------------------------------------------------------------------------------

#: Every acknowledgement part B's constructs make; each must match a real finding.
PART_B_ACKNOWLEDGEMENTS = {
    "AwsSolutions-AEC6",
    "AwsSolutions-SMG4",
    "AwsSolutions-ECS2",
    "AwsSolutions-IAM5[Resource::*]",
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]",
    "AwsSolutions-L1",
}


def test_cdk_nag_passes_with_reasoned_acknowledgements(reference_outdir: Path) -> None:
    """cdk-nag reports no violation, and each of part B's acknowledgements suppresses a real finding with a reason."""
    report = json.loads((reference_outdir / "validation-report.json").read_text(encoding="utf-8"))
    (nag,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert nag["violations"] == []
    suppressed = nag.get("suppressedViolations", [])
    assert {s["ruleName"] for s in suppressed} >= PART_B_ACKNOWLEDGEMENTS
    for entry in suppressed:
        if entry["ruleName"] in PART_B_ACKNOWLEDGEMENTS:
            assert entry["acknowledgedId"] == "AwsSolutions::" + entry["ruleName"]
            assert len(entry["reason"]) > 40
