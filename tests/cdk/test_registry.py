"""ConnectionRegistry: a Multi-AZ, encrypted Valkey replication group admitting only its peers; or an existing URL."""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from constructs_lib.registry import DEFAULT_PORT
from tests.cdk.test_service import VARIANT_REDIS_URL, drain_function, only, variant
from tests.cdk_reference import new_app


def test_replication_group_settings(reference_template_json: dict[str, Any]) -> None:
    """Valkey 8.0 on cache.t4g.small, a primary and one replica, Multi-AZ failover, TLS, at rest, RBAC user group."""
    _, props = only(reference_template_json, "AWS::ElastiCache::ReplicationGroup")
    _, users = only(reference_template_json, "AWS::ElastiCache::UserGroup")
    assert {k: v for k, v in props.items() if k not in ("CacheSubnetGroupName", "SecurityGroupIds")} == {
        "ReplicationGroupDescription": "stickyws connection registry",
        "Engine": "valkey",
        "EngineVersion": "8.0",
        "CacheNodeType": "cache.t4g.small",
        "NumCacheClusters": 2,
        "AutomaticFailoverEnabled": True,
        "MultiAZEnabled": True,
        "TransitEncryptionEnabled": True,
        "TransitEncryptionMode": "required",
        "AtRestEncryptionEnabled": True,
        "Port": 6380,
        "UserGroupIds": [users["UserGroupId"]],
    }
    assert DEFAULT_PORT == 6380


def test_subnet_group_uses_private_subnets(reference_template_json: dict[str, Any]) -> None:
    """The cache nodes live in the VPC's private subnets, one per availability zone."""
    group_id, group = only(reference_template_json, "AWS::ElastiCache::SubnetGroup")
    _, props = only(reference_template_json, "AWS::ElastiCache::ReplicationGroup")
    assert props["CacheSubnetGroupName"] == {"Ref": group_id}
    subnets = group["SubnetIds"]
    assert len(subnets) == 2
    for subnet in subnets:
        assert "Private" in subnet["Ref"]


def test_security_group_admits_only_service_and_notifier(reference_template_json: dict[str, Any]) -> None:
    """The registry's security group has no inline ingress and admits exactly the service and the notifier on 6380."""
    resources = reference_template_json["Resources"]
    _, props = only(reference_template_json, "AWS::ElastiCache::ReplicationGroup")
    (sg_ref,) = props["SecurityGroupIds"]
    sg_id = sg_ref["Fn::GetAtt"][0]
    assert "SecurityGroupIngress" not in resources[sg_id]["Properties"]
    rules = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress"
        and r["Properties"]["GroupId"] == {"Fn::GetAtt": [sg_id, "GroupId"]}
    ]
    assert {(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in rules} == {("tcp", 6380, 6380)}
    sources = {r["SourceSecurityGroupId"]["Fn::GetAtt"][0] for r in rules}
    _, service = only(reference_template_json, "AWS::ECS::Service")
    (service_sg,) = service["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    _, function = drain_function(reference_template_json)
    (function_sg,) = function["VpcConfig"]["SecurityGroupIds"]
    assert sources == {service_sg["Fn::GetAtt"][0], function_sg["Fn::GetAtt"][0]}
    assert len(rules) == 2


def test_existing_endpoint_creates_nothing() -> None:
    """With existing_url no ElastiCache resource or security group is created and the URL is passed through."""
    v = variant()
    v.template.resource_count_is("AWS::ElastiCache::ReplicationGroup", 0)
    v.template.resource_count_is("AWS::ElastiCache::SubnetGroup", 0)
    assert v.registry.security_group is None
    assert v.registry.replication_group is None
    assert v.registry.url == VARIANT_REDIS_URL
    assert (v.registry.endpoint_address, v.registry.port) == ("registry.example.internal", 6379)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"replicas": 0}, "replicas=0 is outside 1-5: Multi-AZ automatic failover needs at least one replica"),
        ({"replicas": 6}, "replicas=6 is outside 1-5"),
        ({"engine": "memcached"}, "engine='memcached' is not supported: use one of valkey, redis"),
        ({"port": 80}, "port=80 is outside 1024-65535"),
        ({"existing_url": "http://cache:6379"}, "is not a redis:// or rediss:// URL with a host"),
    ],
)
def test_invalid_arguments_fail_with_a_fix(kwargs: dict[str, Any], message: str) -> None:
    """Impossible registry arguments fail in the constructor with a message that says what to pass."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_ec2 as ec2

    from constructs_lib.registry import ConnectionRegistry

    stack = Stack(App(), "Invalid")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        ConnectionRegistry(stack, "Registry", vpc=vpc, **kwargs)


def test_redis_engine_version() -> None:
    """engine='redis' pins Redis OSS 7.1 (no synth needed: the L1 carries the values)."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_ec2 as ec2

    from constructs_lib.registry import ConnectionRegistry

    stack = Stack(App(), "RedisOss")
    registry = ConnectionRegistry(stack, "Registry", vpc=ec2.Vpc(stack, "Vpc", max_azs=2), engine="redis", replicas=2)
    group = registry.replication_group
    assert group is not None
    assert (group.engine, group.engine_version, group.num_cache_clusters) == ("redis", "7.1", 3)
    assert registry.port == 6380


# -- each registry mode and auth mode, synthesized once with cdk-nag on -------------------------------------

MODE_STACKS: dict[str, dict[str, Any]] = {
    "Cluster": {"registry_mode": "cluster", "registry_shards": 3, "registry_replicas_per_shard": 2},
    "Serverless": {
        "registry_mode": "serverless",
        "registry_serverless_max_data_gb": 5,
        "registry_serverless_max_ecpu_per_s": 50_000,
    },
    "Token": {"registry_auth": "token"},
    "NoAuth": {"registry_auth": "none"},
}


@dataclass(frozen=True)
class ModeStack:
    """One synthesized mode stack: its template, registry and the role and container wired to it."""

    json: dict[str, Any]
    registry: Any
    role_id: str
    container_env: dict[str, Any]
    container_secrets: list[dict[str, Any]]


@functools.cache
def mode_stacks() -> tuple[dict[str, ModeStack], dict[str, Any]]:
    """Every MODE_STACKS entry as a stack of one app, synthesized once with cdk-nag; and the nag plugin report."""
    from aws_cdk import Stack
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_ecs as ecs

    from constructs_lib.nag import acknowledge, add_aws_solutions_checks
    from constructs_lib.registry import ConnectionRegistry
    from stickyws.settings import Settings

    outdir = Path(tempfile.mkdtemp(prefix="stickyws-registry-modes-"))
    atexit.register(shutil.rmtree, outdir, True)
    app = new_app(outdir)
    add_aws_solutions_checks(app)
    built = {}
    for name, overrides in MODE_STACKS.items():
        stack = Stack(app, f"Registry{name}")
        vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=1)
        vpc.add_flow_log("FlowLog")
        registry = ConnectionRegistry(stack, "Registry", vpc=vpc, settings=Settings().with_overrides(overrides))
        task = ecs.FargateTaskDefinition(stack, "Task")
        acknowledge(task, "AwsSolutions-ECS2", "Test fixture: the environment holds only the registry's user names.")
        container = task.add_container(
            "server",
            image=ecs.ContainerImage.from_registry("example/server:1"),
            logging=ecs.LogDriver.aws_logs(stream_prefix="s"),
        )
        registry.connect_container(container)
        built[name] = (stack, registry, task)
    assembly = app.synth()
    result = {}
    for name, (stack, registry, _task) in built.items():
        template = assembly.get_stack_by_name(stack.stack_name).template
        _, task_props = next(
            (k, v["Properties"]) for k, v in template["Resources"].items() if v["Type"] == "AWS::ECS::TaskDefinition"
        )
        (definition,) = task_props["ContainerDefinitions"]
        result[name] = ModeStack(
            json=template,
            registry=registry,
            role_id=task_props["TaskRoleArn"]["Fn::GetAtt"][0],
            container_env={e["Name"]: e["Value"] for e in definition.get("Environment", [])},
            container_secrets=definition.get("Secrets", []),
        )
    report = json.loads((outdir / "validation-report.json").read_text(encoding="utf-8"))
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    return result, plugin


def role_statements(template_json: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """Every statement of the inline policies attached to ``role_id``."""
    return [
        s
        for r in template_json["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in r["Properties"]["Roles"]
        for s in r["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_every_mode_passes_cdk_nag() -> None:
    """cdk-nag's AwsSolutions pack passes every registry and auth mode; each acknowledgement has a reason."""
    _, plugin = mode_stacks()
    assert plugin["conclusion"] == "success"
    assert plugin["violations"] == []
    for finding in plugin["suppressedViolations"]:
        assert len(finding["reason"].split()) >= 8, finding


def test_cluster_mode_shards_with_replicas_and_failover() -> None:
    """registry_mode=cluster: 3 shards x 2 replicas, cluster mode on, Multi-AZ failover, TLS, configuration endpoint."""
    m = mode_stacks()[0]["Cluster"]
    rg_id, props = only(m.json, "AWS::ElastiCache::ReplicationGroup")
    _, users = only(m.json, "AWS::ElastiCache::UserGroup")
    assert {k: v for k, v in props.items() if k not in ("CacheSubnetGroupName", "SecurityGroupIds")} == {
        "ReplicationGroupDescription": "stickyws connection registry",
        "Engine": "valkey",
        "EngineVersion": "8.0",
        "CacheNodeType": "cache.t4g.small",
        "NumNodeGroups": 3,
        "ReplicasPerNodeGroup": 2,
        "ClusterMode": "enabled",
        "CacheParameterGroupName": "default.valkey8.cluster.on",
        "AutomaticFailoverEnabled": True,
        "MultiAZEnabled": True,
        "TransitEncryptionEnabled": True,
        "TransitEncryptionMode": "required",
        "AtRestEncryptionEnabled": True,
        "Port": 6380,
        "UserGroupIds": [users["UserGroupId"]],
    }
    assert m.registry.mode == "cluster"
    assert m.json["Resources"][rg_id]["Type"] == "AWS::ElastiCache::ReplicationGroup"
    url = m.registry.url
    assert url.startswith("rediss://")
    assert "ConfigurationEndPoint.Address" in json.dumps(resolved(m, url))


def resolved(m: ModeStack, value: str) -> Any:
    """``value`` (a token) resolved in the registry's stack."""
    from aws_cdk import Stack

    return Stack.of(m.registry).resolve(value)


def test_serverless_mode_is_a_valkey_serverless_cache_with_limits() -> None:
    """registry_mode=serverless: a Valkey 8 Serverless cache with the usage limits, RBAC user group, port 6379."""
    m = mode_stacks()[0]["Serverless"]
    assert [r["Type"] for r in m.json["Resources"].values() if r["Type"] == "AWS::ElastiCache::ReplicationGroup"] == []
    cache_id, cache = only(m.json, "AWS::ElastiCache::ServerlessCache")
    _, users = only(m.json, "AWS::ElastiCache::UserGroup")
    assert cache["Engine"] == "valkey"
    assert cache["MajorEngineVersion"] == "8"
    assert cache["CacheUsageLimits"] == {
        "DataStorage": {"Unit": "GB", "Maximum": 5},
        "ECPUPerSecond": {"Maximum": 50000},
    }
    assert cache["UserGroupId"] == users["UserGroupId"]
    assert len(cache["SubnetIds"]) == 2
    assert m.registry.port == 6379
    assert resolved(m, m.registry.url) == {
        "Fn::Join": ["", ["rediss://", {"Fn::GetAtt": [cache_id, "Endpoint.Address"]}, ":6379"]]
    }
    assert m.container_env["REDIS_IAM_SERVERLESS"] == "true"
    assert m.container_env["REDIS_IAM_CACHE_NAME"] == cache["ServerlessCacheName"]
    connect = [s for s in role_statements(m.json, m.role_id) if s["Action"] == "elasticache:Connect"]
    assert len(connect) == 1
    assert connect[0]["Resource"][0] == {"Fn::GetAtt": [cache_id, "ARN"]}


def test_iam_mode_user_group_and_grants() -> None:
    """auth=iam: the default user is off, the app user authenticates with IAM, and the role may Connect to both."""
    m = mode_stacks()[0]["Cluster"]
    users = {p["UserName"]: p for p in resources(m.json, "AWS::ElastiCache::User")}
    app_id = m.registry.user_id
    assert users["default"]["AccessString"] == "off -@all"
    assert users[app_id] == {
        "Engine": "valkey",
        "UserId": app_id,
        "UserName": app_id,
        "AccessString": "on ~* &* +@all",
        "AuthenticationMode": {"Type": "iam"},
    }
    _, group = only(m.json, "AWS::ElastiCache::UserGroup")
    assert group["UserIds"] == [users["default"]["UserId"], app_id]
    (connect,) = [s for s in role_statements(m.json, m.role_id) if s["Action"] == "elasticache:Connect"]
    rendered = json.dumps(connect["Resource"])
    assert ":replicationgroup:" in rendered
    assert f":user:{app_id}" in rendered
    assert {k: m.container_env[k] for k in ("REDIS_AUTH", "REDIS_USER")} == {"REDIS_AUTH": "iam", "REDIS_USER": app_id}
    assert m.container_secrets == []


def test_token_mode_password_from_secrets_manager() -> None:
    """auth=token: a generated secret is the user's password (a dynamic reference) and the container's secret."""
    m = mode_stacks()[0]["Token"]
    secret_id, secret = only(m.json, "AWS::SecretsManager::Secret")
    app_id = m.registry.user_id
    assert secret["GenerateSecretString"] == {
        "SecretStringTemplate": f'{{"username": "{app_id}"}}',
        "GenerateStringKey": "password",
        "PasswordLength": 64,
        "ExcludePunctuation": True,
    }
    (user,) = [p for p in resources(m.json, "AWS::ElastiCache::User") if p["UserName"] == app_id]
    assert user["AuthenticationMode"]["Type"] == "password"
    (password,) = user["AuthenticationMode"]["Passwords"]
    assert password == {
        "Fn::Join": ["", ["{{resolve:secretsmanager:", {"Ref": secret_id}, ":SecretString:password::}}"]]
    }
    assert m.container_secrets == [
        {"Name": "REDIS_PASSWORD", "ValueFrom": {"Fn::Join": ["", [{"Ref": secret_id}, ":password::"]]}}
    ]
    assert {k: m.container_env[k] for k in ("REDIS_AUTH", "REDIS_USER")} == {
        "REDIS_AUTH": "token",
        "REDIS_USER": app_id,
    }
    assert "REDIS_PASSWORD" not in m.container_env
    assert not [s for s in role_statements(m.json, m.role_id) if s["Action"] == "elasticache:Connect"]
    assert (
        m.registry.client_environment(password_by_arn=True)["REDIS_PASSWORD_SECRET_ARN"]
        == m.registry.password_secret.secret_arn
    )


def test_no_auth_mode_has_no_users_and_says_so() -> None:
    """auth=none: no user group, no grants, REDIS_AUTH=none, TLS still required."""
    m = mode_stacks()[0]["NoAuth"]
    _, props = only(m.json, "AWS::ElastiCache::ReplicationGroup")
    assert "UserGroupIds" not in props
    assert props["TransitEncryptionMode"] == "required"
    assert resources(m.json, "AWS::ElastiCache::User") == []
    assert m.container_env["REDIS_AUTH"] == "none"
    assert not [s for s in role_statements(m.json, m.role_id) if "elasticache" in json.dumps(s)]


def resources(template_json: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    """Properties of every resource of ``resource_type``."""
    return [r["Properties"] for r in template_json["Resources"].values() if r["Type"] == resource_type]


def test_reference_service_and_notifier_authenticate(reference_template_json: dict[str, Any]) -> None:
    """In the reference stack the task role and the drain notifier's role may elasticache:Connect as the app user."""
    _, task = only(reference_template_json, "AWS::ECS::TaskDefinition")
    _, fn = drain_function(reference_template_json)
    (user,) = [u for u in resources(reference_template_json, "AWS::ElastiCache::User") if u["UserName"] != "default"]
    for role_id in (task["TaskRoleArn"]["Fn::GetAtt"][0], fn["Role"]["Fn::GetAtt"][0]):
        (connect,) = [
            s for s in role_statements(reference_template_json, role_id) if s["Action"] == "elasticache:Connect"
        ]
        assert json.dumps(connect["Resource"]).count(f":user:{user['UserId']}") == 1
    assert fn["Environment"]["Variables"]["REDIS_USER"] == user["UserId"]


@pytest.mark.parametrize("name", ["Cluster", "Serverless", "Token"])
def test_mode_templates_pass_cfn_lint(name: str) -> None:
    """cfn-lint finds no error in the cluster, Serverless and password-user templates (the reference template,
    linted in test_nag_and_lint.py, covers single and IAM; NoAuth only leaves resources out)."""
    from cfnlint.api import lint

    matches = lint(json.dumps(mode_stacks()[0][name].json))
    assert [f"{m.rule.id} {m.message}" for m in matches if m.rule.severity == "error"] == []
