"""WebSocketFargateService: cluster, task definition, container, service and autoscaling, by value.

Most tests read the shared reference template (one synth per session, see conftest.py). The
"variant" stack (built once, cached, see :func:`variant`) exercises what the reference stack does
not: an existing cluster, a user image and secret, an existing registry endpoint, extra environment,
non-default settings, an alarm topic and ``grant_describe_target_health``.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from constructs_lib.service import (
    CONTAINER_NAME,
    TASK_PROTECTION_ACTIONS,
    container_environment,
    health_check_command,
)
from stickyws.settings import (
    ENV_JWT_SECRET,
    ENV_REDIS_URL,
    ENV_SERVICE_NAME,
    ENV_TARGET_GROUP_ARN,
    LABEL_SERVER_MODE,
    Settings,
    server_labels,
    to_env,
)

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

DEFAULTS = Settings()
#: Settings of the variant stack: every value differs from the default.
VARIANT_OVERRIDES: dict[str, Any] = {
    "port": 9000,
    "task_cpu": 1024,
    "task_memory_mib": 2048,
    "stop_timeout_s": 90,
    "health_check_grace_s": 120,
    "desired_count": 3,
    "min_count": 3,
    "max_count": 20,
    "target_connections_per_task": 2500,
    "target_cpu_percent": 70,
    "scale_in_cooldown_s": 900,
    "scale_out_cooldown_s": 30,
    "metrics_namespace": "Custom/WebSockets",
    "health_check_path": "/healthz",
}
VARIANT_SETTINGS = DEFAULTS.with_overrides(VARIANT_OVERRIDES)
VARIANT_IMAGE = "public.ecr.aws/example/ws-server:1.2.3"
VARIANT_REDIS_URL = "rediss://registry.example.internal:6379"
VARIANT_SERVICE_NAME = "variant-ws"
VARIANT_CLUSTER_ARN = "arn:aws:ecs:eu-west-1:123456789012:cluster/shared"


@dataclass(frozen=True)
class Variant:
    """The synthesized variant stack and its constructs."""

    template: Any
    json: dict[str, Any]
    service: Any
    registry: Any
    notifier: Any
    observability: Any
    topic_id: str
    target_group_id: str
    backend_sg_id: str


@functools.cache
def variant() -> Variant:
    """Build and synthesize the variant stack once per process (the only extra synth of part B's tests)."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_ecs as ecs
    from aws_cdk import aws_elasticloadbalancingv2 as elbv2
    from aws_cdk import aws_secretsmanager as secretsmanager
    from aws_cdk import aws_sns as sns
    from aws_cdk.assertions import Template

    from constructs_lib.drain_notifier import DrainNotifier
    from constructs_lib.observability import WebSocketObservability
    from constructs_lib.registry import ConnectionRegistry
    from constructs_lib.service import WebSocketFargateService

    outdir = Path(tempfile.mkdtemp(prefix="stickyws-variant-"))
    atexit.register(shutil.rmtree, outdir, True)
    app = App(outdir=str(outdir), builtin_cloud_formation_validation=False)
    stack = Stack(app, "Variant")
    vpc = ec2.Vpc(stack, "OwnVpc", max_azs=2, nat_gateways=1)
    cluster = ecs.Cluster.from_cluster_attributes(
        stack, "SharedCluster", cluster_name="shared", cluster_arn=VARIANT_CLUSTER_ARN, vpc=vpc
    )
    registry = ConnectionRegistry(stack, "Registry", vpc=vpc, existing_url=VARIANT_REDIS_URL)
    backend = ec2.SecurityGroup(stack, "Backend", vpc=vpc, description="a publishing backend")
    service = WebSocketFargateService(
        stack,
        "Ws",
        vpc=vpc,
        settings=VARIANT_SETTINGS,
        cluster=cluster,
        image=ecs.ContainerImage.from_registry(VARIANT_IMAGE),
        jwt_secret=secretsmanager.Secret.from_secret_name_v2(stack, "SharedKey", "shared/jwt"),
        redis_url=registry.url,
        environment={"APP_MODE": "variant"},
        service_name=VARIANT_SERVICE_NAME,
        publishers=[backend],
        publish_key=secretsmanager.Secret.from_secret_name_v2(stack, "SharedPublishKey", "shared/publish"),
    )
    registry.allow_from(service.service)
    alb = elbv2.ApplicationLoadBalancer(stack, "OwnAlb", vpc=vpc, internet_facing=False)
    listener = alb.add_listener("Http", port=80, open=False)
    target_group = listener.add_targets(
        "Ws", port=VARIANT_SETTINGS["port"], protocol=elbv2.ApplicationProtocol.HTTP, targets=[service.service]
    )
    service.grant_describe_target_health(target_group)
    service.grant_describe_target_health(target_group)  # idempotent
    notifier = DrainNotifier(
        stack, "Drain", vpc=vpc, cluster=cluster, service=service.service, registry_url=registry.url, retry_attempts=1
    )
    registry.allow_from(notifier.function)
    topic = sns.Topic(stack, "AlarmTopic")
    observability = WebSocketObservability(
        stack,
        "Obs",
        settings=VARIANT_SETTINGS,
        load_balancer=alb,
        target_group=target_group,
        service=service.service,
        alarm_topic=topic,
        unhealthy_evaluation_periods=5,
        elb_5xx_threshold=25,
        imbalance_factor=1.5,
        imbalance_floor_connections=300,
    )
    template = Template.from_stack(stack)
    return Variant(
        template=template,
        json=template.to_json(),
        service=service,
        registry=registry,
        notifier=notifier,
        observability=observability,
        topic_id=stack.get_logical_id(topic.node.default_child),
        target_group_id=stack.get_logical_id(target_group.node.default_child),
        backend_sg_id=stack.get_logical_id(backend.node.default_child),
    )


#: What ConnectionRegistry renders for an IAM-authenticated client.
REGISTRY_AUTH_ENV = ("REDIS_AUTH", "REDIS_USER", "REDIS_IAM_CACHE_NAME", "REDIS_IAM_SERVERLESS")


def only(
    template_json: dict[str, Any], resource_type: str, *, where: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """``(logical id, Properties)`` of the one resource of ``resource_type`` (whose properties include
    ``where``); fails if there are more or none."""
    found = [
        (k, v.get("Properties", {}))
        for k, v in template_json["Resources"].items()
        if v["Type"] == resource_type and all(v.get("Properties", {}).get(p) == x for p, x in (where or {}).items())
    ]
    assert len(found) == 1, f"expected one {resource_type}, found {[k for k, _ in found]}"
    return found[0]


def drain_function(template_json: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(logical id, Properties)`` of the drain-notifier function (the template has CDK's own functions too)."""
    from constructs_lib.bundling import HANDLER

    found = [
        (k, v["Properties"])
        for k, v in template_json["Resources"].items()
        if v["Type"] == "AWS::Lambda::Function" and v["Properties"].get("Handler") == HANDLER
    ]
    assert len(found) == 1, f"expected one drain-notifier function, found {[k for k, _ in found]}"
    return found[0]


def container(template_json: dict[str, Any]) -> dict[str, Any]:
    """The ``server`` container definition of the one task definition."""
    _, props = only(template_json, "AWS::ECS::TaskDefinition")
    (definition,) = props["ContainerDefinitions"]
    assert definition["Name"] == CONTAINER_NAME
    return dict(definition)


def env_of(definition: dict[str, Any]) -> dict[str, Any]:
    """The container environment as ``{name: value}``."""
    return {item["Name"]: item["Value"] for item in definition["Environment"]}


# -- reference stack -------------------------------------------------------------------------------


def test_defaults_are_the_values_asserted_below() -> None:
    """The values asserted on the reference template are the settings defaults (and differ from AWS defaults)."""
    assert (DEFAULTS["task_cpu"], DEFAULTS["task_memory_mib"]) == (512, 1024)
    assert (DEFAULTS["stop_timeout_s"], DEFAULTS["health_check_grace_s"]) == (30, 60)
    assert (DEFAULTS["min_healthy_percent"], DEFAULTS["max_percent"]) == (100, 200)
    assert (DEFAULTS["scale_in_cooldown_s"], DEFAULTS["scale_out_cooldown_s"]) == (600, 60)
    assert (DEFAULTS["target_connections_per_task"], DEFAULTS["target_cpu_percent"]) == (5000, 60)
    assert (DEFAULTS["desired_count"], DEFAULTS["min_count"], DEFAULTS["max_count"]) == (2, 2, 10)
    assert DEFAULTS["port"] == 8080


def test_new_cluster_has_container_insights(reference_template_json: dict[str, Any]) -> None:
    """A new cluster is created with Container Insights enabled."""
    _, props = only(reference_template_json, "AWS::ECS::Cluster")
    assert props["ClusterSettings"] == [{"Name": "containerInsights", "Value": "enabled"}]


def test_task_definition_size_and_platform(reference_template: Any) -> None:
    """The Fargate task gets 512 CPU units and 1024 MiB, awsvpc, linux/x86_64."""
    reference_template.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "Cpu": "512",
            "Memory": "1024",
            "NetworkMode": "awsvpc",
            "RequiresCompatibilities": ["FARGATE"],
            "RuntimePlatform": {"CpuArchitecture": "X86_64", "OperatingSystemFamily": "LINUX"},
        },
    )


def test_container_port_stop_timeout_and_image(reference_template_json: dict[str, Any]) -> None:
    """The server container maps port 8080, stops after 30 s and runs the image asset built from the Dockerfile."""
    definition = container(reference_template_json)
    assert definition["PortMappings"] == [{"ContainerPort": 8080, "Protocol": "tcp"}]
    assert definition["StopTimeout"] == 30
    assert definition["Essential"] is True
    image = definition["Image"]["Fn::Sub"]
    assert image.startswith(
        "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/cdk-hnb659fds-container-assets-"
    )


def test_image_asset_context_is_narrowed_by_dockerignore(reference_outdir: Path) -> None:
    """The staged Docker build context holds the Dockerfile and the package, not tests, the venv or node_modules."""
    import json

    manifests = list(reference_outdir.glob("*.assets.json"))
    assert manifests, "no asset manifest in the cloud assembly"
    docker_dirs = [
        reference_outdir / asset["source"]["directory"]
        for manifest in manifests
        for asset in json.loads(manifest.read_text(encoding="utf-8")).get("dockerImages", {}).values()
    ]
    assert len(docker_dirs) == 1
    staged = {p.name for p in docker_dirs[0].iterdir()}
    assert {"Dockerfile", "pyproject.toml", "LICENSE", "constraints.txt", "stickyws"} <= staged
    assert not staged & {"tests", ".venv", "node_modules", "cdk.out", "constructs_lib", "stacks", ".git", "docs"}


def test_container_environment_is_the_settings_model(reference_template_json: dict[str, Any]) -> None:
    """The environment is exactly to_env(settings) plus REDIS_URL (the registry) and the service name."""
    definition = container(reference_template_json)
    env = env_of(definition)
    expected = to_env(DEFAULTS)
    assert {k: v for k, v in env.items() if k.startswith("STICKYWS_") and k != ENV_SERVICE_NAME} == expected
    rg_id, _ = only(reference_template_json, "AWS::ElastiCache::ReplicationGroup")
    assert env[ENV_REDIS_URL] == {
        "Fn::Join": ["", ["rediss://", {"Fn::GetAtt": [rg_id, "PrimaryEndPoint.Address"]}, ":6380"]]
    }
    _, service = only(reference_template_json, "AWS::ECS::Service")
    assert env[ENV_SERVICE_NAME] == service["ServiceName"]
    _, user = only(reference_template_json, "AWS::ElastiCache::User", where={"AuthenticationMode": {"Type": "iam"}})
    assert {k: env[k] for k in REGISTRY_AUTH_ENV} == {
        "REDIS_AUTH": "iam",
        "REDIS_USER": user["UserId"],
        "REDIS_IAM_CACHE_NAME": {"Ref": rg_id},
        "REDIS_IAM_SERVERLESS": "false",
    }
    assert set(env) == {*expected, ENV_REDIS_URL, ENV_SERVICE_NAME, *REGISTRY_AUTH_ENV}
    assert ENV_JWT_SECRET not in env


def test_container_says_the_reference_server_runs_there(reference_template_json: dict[str, Any]) -> None:
    """The container's Docker labels are server_labels(settings): the reference server, told every setting."""
    assert container(reference_template_json)["DockerLabels"] == {LABEL_SERVER_MODE: "reference"}
    assert server_labels(DEFAULTS) == {LABEL_SERVER_MODE: "reference"}


def test_jwt_secret_comes_from_secrets_manager(reference_template_json: dict[str, Any]) -> None:
    """The signing key is an ECS secret referencing a generated Secrets Manager secret, never a literal."""
    definition = container(reference_template_json)
    secret_id, secret = only(reference_template_json, "AWS::SecretsManager::Secret")
    assert definition["Secrets"] == [{"Name": ENV_JWT_SECRET, "ValueFrom": {"Ref": secret_id}}]
    assert secret["GenerateSecretString"] == {"ExcludePunctuation": True, "PasswordLength": 64}
    assert "SecretString" not in secret


def test_awslogs_with_retention(reference_template_json: dict[str, Any]) -> None:
    """The container logs with awslogs to a log group kept for 30 days."""
    definition = container(reference_template_json)
    log_config = definition["LogConfiguration"]
    assert log_config["LogDriver"] == "awslogs"
    group_ref = log_config["Options"]["awslogs-group"]["Ref"]
    assert log_config["Options"]["awslogs-stream-prefix"] == "stickyws"
    assert reference_template_json["Resources"][group_ref]["Properties"]["RetentionInDays"] == 30


def test_container_health_check(reference_template_json: dict[str, Any]) -> None:
    """The ECS health check runs the Dockerfile's urllib probe on /health every 30 s, 5 s timeout, 3 retries."""
    check = container(reference_template_json)["HealthCheck"]
    assert check == {
        "Command": health_check_command(DEFAULTS),
        "Interval": 30,
        "Timeout": 5,
        "Retries": 3,
        "StartPeriod": 60,
    }
    assert check["Command"][:3] == ["CMD", "python", "-c"]
    assert "urlopen('http://127.0.0.1:8080/health', timeout=4)" in check["Command"][3]


def test_service_deployment_settings(reference_template_json: dict[str, Any]) -> None:
    """The service: 2 tasks, grace 60 s, 100/200 %, circuit breaker with rollback, private subnets, no public IP."""
    _, props = only(reference_template_json, "AWS::ECS::Service")
    assert props["DesiredCount"] == 2
    assert props["HealthCheckGracePeriodSeconds"] == 60
    assert props["LaunchType"] == "FARGATE"
    deployment = props["DeploymentConfiguration"]
    assert deployment["MinimumHealthyPercent"] == 100
    assert deployment["MaximumPercent"] == 200
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    network = props["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    for subnet in network["Subnets"]:
        assert "Private" in subnet["Ref"]
    assert props["LoadBalancers"][0]["ContainerName"] == "server"
    assert props["LoadBalancers"][0]["ContainerPort"] == 8080


def test_service_security_group_admits_only_the_load_balancer(reference_template_json: dict[str, Any]) -> None:
    """The tasks' security group has no inline ingress; its only ingress rule is from the ALB's group on 8080."""
    resources = reference_template_json["Resources"]
    _, props = only(reference_template_json, "AWS::ECS::Service")
    (sg_ref,) = props["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    sg_id = sg_ref["Fn::GetAtt"][0]
    assert "SecurityGroupIngress" not in resources[sg_id]["Properties"]
    rules = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress"
        and r["Properties"]["GroupId"] == {"Fn::GetAtt": [sg_id, "GroupId"]}
    ]
    assert len(rules) == 1
    (rule,) = rules
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 8080, 8080)
    source_id = rule["SourceSecurityGroupId"]["Fn::GetAtt"][0]
    lb_id, lb = only(reference_template_json, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert {"Fn::GetAtt": [source_id, "GroupId"]} in lb["SecurityGroups"], lb_id


def test_autoscaling_range(reference_template: Any) -> None:
    """The task count scales between 2 and 10."""
    reference_template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {"MinCapacity": 2, "MaxCapacity": 10, "ScalableDimension": "ecs:service:DesiredCount"},
    )


def test_autoscaling_on_connections_per_task(reference_template_json: dict[str, Any]) -> None:
    """Target tracking keeps the server's ActiveConnections (Average, ServiceName) at 5000, cooldowns 600/60."""
    _, service = only(reference_template_json, "AWS::ECS::Service")
    policies = [
        r["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        for r in reference_template_json["Resources"].values()
        if r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"
    ]
    custom = [p for p in policies if "CustomizedMetricSpecification" in p]
    assert len(custom) == 1
    (policy,) = custom
    assert policy["CustomizedMetricSpecification"] == {
        "Namespace": "StickyWebSocket",
        "MetricName": "ActiveConnections",
        "Dimensions": [{"Name": "ServiceName", "Value": service["ServiceName"]}],
        "Statistic": "Average",
    }
    assert (policy["TargetValue"], policy["ScaleInCooldown"], policy["ScaleOutCooldown"]) == (5000, 600, 60)


def test_autoscaling_on_cpu(reference_template_json: dict[str, Any]) -> None:
    """A second target-tracking policy keeps CPU at 60 %, cooldowns 600/60."""
    policies = [
        r["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        for r in reference_template_json["Resources"].values()
        if r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"
    ]
    cpu = [p for p in policies if "PredefinedMetricSpecification" in p]
    assert cpu == [
        {
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
            "TargetValue": 60,
            "ScaleInCooldown": 600,
            "ScaleOutCooldown": 60,
        }
    ]


# -- variant stack ---------------------------------------------------------------------------------


def test_variant_settings_are_valid() -> None:
    """The variant's non-default settings pass every rule (so the variant tests real deployable values)."""
    VARIANT_SETTINGS.check()


def test_existing_cluster_is_used_as_is() -> None:
    """With an existing cluster no cluster is created and the service runs in the given one."""
    v = variant()
    v.template.resource_count_is("AWS::ECS::Cluster", 0)
    _, props = only(v.json, "AWS::ECS::Service")
    assert props["Cluster"] == "shared"
    assert props["ServiceName"] == VARIANT_SERVICE_NAME


def test_user_image_secret_and_extra_environment() -> None:
    """A passed image and secret are used, and extra variables join the rendered environment."""
    v = variant()
    definition = container(v.json)
    assert definition["Image"] == VARIANT_IMAGE
    secrets = {item["Name"]: str(item["ValueFrom"]) for item in definition["Secrets"]}
    assert "shared/jwt" in secrets[ENV_JWT_SECRET]
    assert "shared/publish" in secrets["STICKYWS_PUBLISH_KEY"]
    v.template.resource_count_is("AWS::SecretsManager::Secret", 0)
    env = env_of(definition)
    assert env == {
        **to_env(VARIANT_SETTINGS),
        ENV_REDIS_URL: VARIANT_REDIS_URL,
        ENV_SERVICE_NAME: VARIANT_SERVICE_NAME,
        ENV_TARGET_GROUP_ARN: {"Ref": v.target_group_id},
        "APP_MODE": "variant",
    }


def test_variant_settings_reach_the_template_by_value() -> None:
    """Every non-default task setting appears in the variant template with its own value."""
    v = variant()
    _, task = only(v.json, "AWS::ECS::TaskDefinition")
    assert (task["Cpu"], task["Memory"]) == ("1024", "2048")
    definition = container(v.json)
    assert definition["StopTimeout"] == 90
    assert definition["PortMappings"][0] == {"ContainerPort": 9000, "Protocol": "tcp"}  # then the publish port
    assert "urlopen('http://127.0.0.1:9000/healthz', timeout=4)" in definition["HealthCheck"]["Command"][3]
    assert definition["HealthCheck"]["StartPeriod"] == 120
    _, service = only(v.json, "AWS::ECS::Service")
    assert (service["DesiredCount"], service["HealthCheckGracePeriodSeconds"]) == (3, 120)
    v.template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget", {"MinCapacity": 3, "MaxCapacity": 20}
    )
    v.template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "TargetTrackingScalingPolicyConfiguration": {
                "CustomizedMetricSpecification": {
                    "Namespace": "Custom/WebSockets",
                    "MetricName": "ActiveConnections",
                    "Dimensions": [{"Name": "ServiceName", "Value": VARIANT_SERVICE_NAME}],
                    "Statistic": "Average",
                },
                "TargetValue": 2500,
                "ScaleInCooldown": 900,
                "ScaleOutCooldown": 30,
            }
        },
    )
    v.template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {"TargetTrackingScalingPolicyConfiguration": {"TargetValue": 70, "ScaleInCooldown": 900}},
    )


def test_grant_describe_target_health() -> None:
    """grant_describe_target_health lets the task role call DescribeTargetHealth (once) and names the target group."""
    v = variant()
    _, task = only(v.json, "AWS::ECS::TaskDefinition")
    role_id = task["TaskRoleArn"]["Fn::GetAtt"][0]
    policies = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for r in v.json["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in r["Properties"]["Roles"]
    ]
    describe = {"Action": "elasticloadbalancing:DescribeTargetHealth", "Effect": "Allow", "Resource": "*"}
    # The other statement is scale-in protection's (tests/cdk/test_scale_in_protection.py).
    assert [[st for st in p if st["Action"] != list(TASK_PROTECTION_ACTIONS)] for p in policies] == [[describe]]


def test_extra_environment_cannot_override_rendered_names() -> None:
    """An extra variable that shadows a setting, REDIS_URL or the secret is refused with a fix."""
    for name in ("STICKYWS_IDLE_TIMEOUT_S", ENV_REDIS_URL, ENV_JWT_SECRET, ENV_SERVICE_NAME):
        with pytest.raises(ValueError, match=f"environment variable {name} is rendered"):
            container_environment(DEFAULTS, service_name="s", redis_url="redis://x:1", extra={name: "1"})


@pytest.mark.parametrize(("status", "exit_code"), [(200, 0), (503, 1)])
def test_health_check_command_probes_the_server(status: int, exit_code: int) -> None:
    """The rendered health-check command exits 0 on a 200 from the health path and non-zero on a 503."""
    import http.server
    import subprocess
    import sys
    import threading

    from stickyws.localproc import free_port

    port = free_port()
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        command = health_check_command(DEFAULTS.with_overrides({"port": port, "health_check_path": "/healthz"}))
        assert command[:2] == ["CMD", "python"]
        proc = subprocess.run([sys.executable, *command[2:]], capture_output=True, timeout=30, check=False)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert proc.returncode == exit_code, proc.stderr
    assert seen == ["/healthz"]


def test_publish_endpoint_opens_only_to_the_publishers() -> None:
    """With publishers, the publish port is mapped, its key comes from Secrets Manager, and only the
    publishers' security group may reach it; the reference stack (no publishers) maps no such port."""
    v = variant()
    definition = container(v.json)
    port = VARIANT_SETTINGS["publish_port"]
    assert sorted(m["ContainerPort"] for m in definition["PortMappings"]) == sorted([VARIANT_SETTINGS["port"], port])
    secret_names = {item["Name"] for item in definition["Secrets"]}
    assert secret_names == {ENV_JWT_SECRET, "STICKYWS_PUBLISH_KEY"}
    rules = [
        r
        for r in v.json["Resources"].values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress" and r["Properties"].get("FromPort") == port
    ]
    assert [(r["Properties"]["ToPort"], r["Properties"]["SourceSecurityGroupId"]) for r in rules] == [
        (port, {"Fn::GetAtt": [v.backend_sg_id, "GroupId"]})
    ]


def test_reference_stack_has_no_publish_endpoint(reference_template_json: dict[str, Any]) -> None:
    """Without publishers the server gets no publish key, so its publish endpoint stays off."""
    definition = container(reference_template_json)
    assert [m["ContainerPort"] for m in definition["PortMappings"]] == [DEFAULTS["port"]]
    assert {item["Name"] for item in definition["Secrets"]} == {ENV_JWT_SECRET}


def test_publishers_need_a_publish_port() -> None:
    """publishers with publish_port=0 fail at construction with the fix in the message."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_ecs as ecs

    from constructs_lib.service import WebSocketFargateService

    stack = Stack(App(), "NoPort")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    with pytest.raises(ValueError, match="set publish_port to a port"):
        WebSocketFargateService(
            stack,
            "Ws",
            vpc=vpc,
            settings=DEFAULTS.with_overrides({"publish_port": 0}),
            image=ecs.ContainerImage.from_registry(VARIANT_IMAGE),
            publishers=[ec2.SecurityGroup(stack, "B", vpc=vpc)],
        )
