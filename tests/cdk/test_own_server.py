"""Your own server (``server_mode=own``) behind the constructs: what it is told, probed with, and scaled on.

GIVEN a Node image on port 3000 with ``/healthz`` (``server_mode=own``), WHEN synthesized, THEN the
task carries none of the reference server's assumptions (python probe, ``STICKYWS_*`` variables,
generated signing key, its ``ActiveConnections`` metric). A second stack renders every health-check
and scaling choice once. Two synths in all (module-scoped fixtures); the refusals build constructs
without synthesizing.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk.assertions import Annotations, Match, Template

from constructs_lib import (
    ContainerHealthCheck,
    ScalingSignal,
    SettingsMismatchError,
    StickyWebSocketLoadBalancer,
    WebSocketFargateService,
    WebSocketObservability,
)
from constructs_lib.health_check import http_command
from constructs_lib.service import NO_CONTAINER_HEALTH_CHECK_ID
from constructs_lib.settings_check import SKIPPED_ID, skipped_in_stack
from stickyws.settings import LABEL_SERVER_ENV, LABEL_SERVER_MODE, Settings, render_value
from tests.cdk.test_observability import alarms, dashboard_body
from tests.cdk_reference import REPO_ROOT, new_app

pytestmark = pytest.mark.synth

NODE_IMAGE = "public.ecr.aws/docker/library/node:20-slim"
#: The team's server: port 3000, health at /healthz, told its port and ping interval.
OWN = Settings().with_overrides(
    {
        "server_mode": "own",
        "port": 3000,
        "health_check_path": "/healthz",
        "server_env": "port=PORT,ping_interval_s=WS_PING_S",
    }
)
SCALING_POLICY = "AWS::ApplicationAutoScaling::ScalingPolicy"
#: What the team's server is told: its port and the ping interval, as text.
TOLD = {"PORT": "3000", "WS_PING_S": render_value(OWN["ping_interval_s"])}


@dataclass(frozen=True)
class Synth:
    """A synthesized stack and the constructs in it."""

    stack: Stack
    json: dict[str, Any]
    web: StickyWebSocketLoadBalancer
    services: dict[str, WebSocketFargateService]


def _containers(template_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{task definition logical id: its one container}``."""
    found = {}
    for key, resource in template_json["Resources"].items():
        if resource["Type"] == "AWS::ECS::TaskDefinition":
            (container,) = resource["Properties"]["ContainerDefinitions"]
            found[key] = container
    return found


def _container_of(synth: Synth, name: str) -> dict[str, Any]:
    task = synth.services[name].task_definition.node.default_child
    return _containers(synth.json)[synth.stack.get_logical_id(task)]  # type: ignore[arg-type]


def _policies_of(synth: Synth, name: str) -> dict[str, dict[str, Any]]:
    """``{policy construct id: TargetTrackingScalingPolicyConfiguration}`` of one service."""
    scalable_target = synth.services[name].scaling.node.find_child("Target")
    target = {"Ref": synth.stack.get_logical_id(scalable_target.node.default_child)}  # type: ignore[arg-type]
    found = {}
    for child in scalable_target.node.children:
        resource = child.node.try_find_child("Resource")
        if resource is None:
            continue
        props = synth.json["Resources"].get(synth.stack.get_logical_id(resource))  # type: ignore[arg-type]
        if props and props["Type"] == SCALING_POLICY:
            assert props["Properties"]["ScalingTargetId"] == target
            found[child.node.id] = props["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    return found


def _vpc(stack: Stack) -> ec2.Vpc:
    return ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The Node server with every default of an own server, attached to a load balancer (one synth)."""
    app = new_app(tmp_path_factory.mktemp("own-node"))
    stack = Stack(app, "OwnNode")
    vpc = _vpc(stack)
    web = StickyWebSocketLoadBalancer(stack, "Web", vpc=vpc, settings=OWN, http_only=True)
    service = WebSocketFargateService(
        stack, "Node", vpc=vpc, settings=OWN, image=ecs.ContainerImage.from_registry(NODE_IMAGE)
    )
    web.attach(service)
    WebSocketObservability(
        stack, "Watch", settings=OWN, load_balancer=web.load_balancer, target_group=web.target_group,
        service=service.service,
    )  # fmt: skip
    return Synth(stack, Template.from_stack(stack).to_json(), web, {"Node": service})


@pytest.fixture(scope="module")
def options(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Every health-check and scaling choice, once each, in one stack (one synth)."""
    app = new_app(tmp_path_factory.mktemp("own-options"))
    stack = Stack(app, "OwnOptions")
    vpc = _vpc(stack)
    cluster = ecs.Cluster(stack, "Cluster", vpc=vpc)
    image = ecs.ContainerImage.from_registry(NODE_IMAGE)
    web = StickyWebSocketLoadBalancer(stack, "Web", vpc=vpc, settings=OWN, http_only=True)
    queue = cloudwatch.Metric(namespace="Team/Chat", metric_name="QueueDepth", statistic="Average")
    rooms = cloudwatch.MathExpression(
        expression="rooms / 10",
        using_metrics={"rooms": cloudwatch.Metric(namespace="Team/Chat", metric_name="Rooms", statistic="Maximum")},
        label="rooms per ten",
    )
    scaled = WebSocketFargateService(
        stack,
        "Scaled",
        vpc=vpc,
        settings=OWN,
        cluster=cluster,
        image=image,
        health_check=ContainerHealthCheck.http("wget"),
        scaling=[
            ScalingSignal.cpu(70),
            ScalingSignal.memory(80),
            ScalingSignal.requests_per_target(600),
            ScalingSignal.connections_per_target(4000),
            ScalingSignal.metric(queue, 50, name="Queue"),
            ScalingSignal.metric(rooms, 3, name="Rooms"),
        ],
    )
    web.attach(scaled)
    services = {"Scaled": scaled}
    services["Curl"] = WebSocketFargateService(
        stack,
        "Curl",
        vpc=vpc,
        settings=OWN,
        cluster=cluster,
        image=image,
        health_check=ContainerHealthCheck.http("curl"),
        jwt_secret=secretsmanager.Secret.from_secret_name_v2(stack, "TeamKey", "team/jwt"),
        jwt_secret_env="JWT_KEY",
        environment={"NODE_ENV": "production"},
    )
    services["Cmd"] = WebSocketFargateService(
        stack,
        "Cmd",
        vpc=vpc,
        settings=OWN,
        cluster=cluster,
        image=image,
        health_check=ContainerHealthCheck.command("CMD", "/app/server", "--healthcheck"),
    )
    services["Py"] = WebSocketFargateService(
        stack, "Py", vpc=vpc, settings=OWN, cluster=cluster, image=image, health_check=ContainerHealthCheck.reference()
    )
    return Synth(stack, Template.from_stack(stack).to_json(), web, services)


# -- the Node server with the own-server defaults -----------------------------------------------------


def test_node_server_has_no_python_health_check(node: Synth) -> None:
    """No health check of the template runs python; the own server's container has no container check at all."""
    for container in _containers(node.json).values():
        assert "python" not in json.dumps(container.get("HealthCheck", {}))
    assert "HealthCheck" not in _container_of(node, "Node")
    assert node.services["Node"].health_check == ContainerHealthCheck.none()


def test_node_server_is_told_only_what_server_env_names(node: Synth) -> None:
    """The environment is PORT and WS_PING_S (server_env, by value), with no STICKYWS_* variable and no secret."""
    container = _container_of(node, "Node")
    env = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert env == TOLD
    assert not [name for name in json.dumps(node.json).split('"') if name.startswith("STICKYWS_")]
    assert "Secrets" not in container
    assert not [r for r in node.json["Resources"].values() if r["Type"] == "AWS::SecretsManager::Secret"]
    assert node.services["Node"].jwt_secret is None


def test_node_server_carries_the_server_labels(node: Synth) -> None:
    """The container's Docker labels say an own server runs there and what it is told."""
    assert _container_of(node, "Node")["DockerLabels"] == {
        LABEL_SERVER_MODE: "own",
        LABEL_SERVER_ENV: "port=PORT,ping_interval_s=WS_PING_S",
    }


def test_node_server_maps_its_port_and_the_alb_checks_healthz(node: Synth) -> None:
    """Port 3000 is mapped and registered, and the target group checks /healthz on it."""
    assert _container_of(node, "Node")["PortMappings"] == [{"ContainerPort": 3000, "Protocol": "tcp"}]
    (service,) = [r["Properties"] for r in node.json["Resources"].values() if r["Type"] == "AWS::ECS::Service"]
    assert [(lb["ContainerName"], lb["ContainerPort"]) for lb in service["LoadBalancers"]] == [("server", 3000)]
    (group,) = [
        r["Properties"]
        for r in node.json["Resources"].values()
        if r["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup"
    ]
    assert (group["HealthCheckPath"], group["Port"]) == ("/healthz", 3000)


def test_node_server_scales_on_cpu_only(node: Synth) -> None:
    """The own server's default scaling is one CPU policy at target_cpu_percent; nothing on ActiveConnections."""
    assert _policies_of(node, "Node") == {
        "Cpu": {
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
            "TargetValue": 60,
            "ScaleInCooldown": 600,
            "ScaleOutCooldown": 60,
        }
    }
    assert "ActiveConnections" not in json.dumps(node.json)


def test_no_container_health_check_is_said_in_an_info_annotation(node: Synth) -> None:
    """Choosing no container check leaves an info annotation pointing at the ALB's target health check."""
    infos = [str(m.data) for m in node.services["Node"].node.metadata if m.type == "aws:cdk:info"]
    (note,) = [i for i in infos if NO_CONTAINER_HEALTH_CHECK_ID in i]
    assert "target health check on /healthz still guards each task" in note


def test_rules_not_judged_are_listed(node: Synth) -> None:
    """Rules no construct judged get one info annotation each on the stack, with the reason; the service lists
    its own skipped rules; rules the attached stack did judge are not listed."""
    infos = [str(m.data) for m in node.stack.node.metadata if m.type == "aws:cdk:info"]
    notes = [i for i in infos if f"[ack: {SKIPPED_ID}]" in i]
    assert len(notes) == 1
    skipped = skipped_in_stack(node.stack)
    assert notes[0].startswith(f"{len(skipped)} settings rules not judged: ")
    told = "your server is not told shutdown_timeout_s (add it to server_env)"
    assert skipped["stop-timeout-covers-shutdown"] == told
    assert "stop-timeout-covers-shutdown (your server is not told shutdown_timeout_s" in notes[0]
    assert "the server is your own (server_mode=own)" in skipped["topic-retention-covers-reconnect"]
    assert "registry-topology, registry-engine, registry-auth" in notes[0]
    # Told ping_interval_s, and the load balancer is attached: the ping rule was judged.
    assert "ping-within-idle-timeout" not in skipped
    assert "http2-off" not in skipped
    assert "ping-within-idle-timeout: the deployment has no load balancer" in node.services["Node"].skipped_rules()
    assert node.web.skipped_rules()[0] == "ping-within-idle-timeout: the deployment has no server"


def test_reference_stack_judges_every_rule(reference_stack: Any) -> None:
    """The reference stack judges all parts once: no rule is reported as not judged."""
    assert skipped_in_stack(reference_stack) == {}
    assert not [m for m in reference_stack.node.metadata if SKIPPED_ID in str(m.data)]


# -- every health-check and scaling choice -------------------------------------------------------------


def test_health_check_choices_render(options: Synth) -> None:
    """wget and curl run in a shell with the probe's timeout, a command is taken as is, reference is python;
    all with the settings' interval, timeout, retries and start period."""
    timing = {"Interval": 30, "Timeout": 5, "Retries": 3, "StartPeriod": 60}
    url = "http://127.0.0.1:3000/healthz"
    assert _container_of(options, "Scaled")["HealthCheck"] == {
        "Command": ["CMD-SHELL", f"wget -q -O /dev/null -T 4 {url} || exit 1"],
        **timing,
    }
    assert _container_of(options, "Curl")["HealthCheck"] == {
        "Command": ["CMD-SHELL", f"curl -fsS -o /dev/null -m 4 {url} || exit 1"],
        **timing,
    }
    assert _container_of(options, "Cmd")["HealthCheck"] == {
        "Command": ["CMD", "/app/server", "--healthcheck"],
        **timing,
    }
    python = _container_of(options, "Py")["HealthCheck"]
    assert python["Command"][:3] == ["CMD", "python", "-c"]
    assert f"urlopen('{url}', timeout=4)" in python["Command"][3]


def test_asked_for_secret_is_injected_under_its_own_name(options: Synth) -> None:
    """An own server given jwt_secret gets it as jwt_secret_env, next to its told settings and extra variables."""
    container = _container_of(options, "Curl")
    (secret,) = container["Secrets"]
    assert secret["Name"] == "JWT_KEY"
    assert "team/jwt" in json.dumps(secret["ValueFrom"])
    env = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert env == {**TOLD, "NODE_ENV": "production"}


def test_scaling_choices_render(options: Synth) -> None:
    """Each chosen signal is one target-tracking policy with the settings' cooldowns, and nothing else."""
    policies = _policies_of(options, "Scaled")
    assert set(policies) == {"Cpu", "Memory", "RequestsPerTarget", "ConnectionsPerTarget", "MetricQueue", "MetricRooms"}
    for policy in policies.values():
        assert (policy["ScaleInCooldown"], policy["ScaleOutCooldown"]) == (600, 60)
    assert policies["Cpu"]["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "ECSServiceAverageCPUUtilization"
    }
    assert policies["Cpu"]["TargetValue"] == 70
    assert policies["Memory"]["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "ECSServiceAverageMemoryUtilization"
    }
    assert policies["Memory"]["TargetValue"] == 80
    requests = policies["RequestsPerTarget"]
    assert requests["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ALBRequestCountPerTarget"
    group_id = options.stack.get_logical_id(options.web.target_group.node.default_child)  # type: ignore[arg-type]
    assert {"Fn::GetAtt": [group_id, "TargetGroupFullName"]} in requests["PredefinedMetricSpecification"][
        "ResourceLabel"
    ]["Fn::Join"][1]
    assert requests["TargetValue"] == 600
    assert policies["MetricQueue"]["CustomizedMetricSpecification"] == {
        "Namespace": "Team/Chat",
        "MetricName": "QueueDepth",
        "Statistic": "Average",
    }
    assert policies["MetricQueue"]["TargetValue"] == 50
    rooms = policies["MetricRooms"]["CustomizedMetricSpecification"]["Metrics"]
    assert rooms == [
        {
            "Id": "rooms",
            "MetricStat": {
                "Metric": {"Namespace": "Team/Chat", "MetricName": "Rooms", "Dimensions": []},
                "Stat": "Maximum",
            },
            "ReturnData": False,
        },
        {"Id": "result", "Expression": "rooms / 10", "Label": "rooms per ten", "ReturnData": True},
    ]


def test_connections_per_target_is_metric_math_on_the_alb(options: Synth) -> None:
    """connections_per_target tracks ActiveConnectionCount (Sum, the load balancer) / 2 / HealthyHostCount
    (Average, the target group) at the chosen target."""
    policy = _policies_of(options, "Scaled")["ConnectionsPerTarget"]
    assert policy["TargetValue"] == 4000
    active, healthy, result = policy["CustomizedMetricSpecification"]["Metrics"]
    lb_id = options.stack.get_logical_id(options.web.load_balancer.node.default_child)  # type: ignore[union-attr,arg-type]
    assert active == {
        "Id": "active",
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/ApplicationELB",
                "MetricName": "ActiveConnectionCount",
                "Dimensions": [{"Name": "LoadBalancer", "Value": {"Fn::GetAtt": [lb_id, "LoadBalancerFullName"]}}],
            },
            "Stat": "Sum",
        },
        "ReturnData": False,
    }
    assert healthy["Id"] == "healthy"
    assert healthy["MetricStat"]["Metric"]["MetricName"] == "HealthyHostCount"
    assert healthy["MetricStat"]["Stat"] == "Average"
    assert [d["Name"] for d in healthy["MetricStat"]["Metric"]["Dimensions"]] == ["LoadBalancer", "TargetGroup"]
    assert result == {
        "Id": "result",
        "Expression": "active / 2 / healthy",
        "Label": "WebSockets per healthy target",
        "ReturnData": True,
    }


# -- refusals (no synth) -------------------------------------------------------------------------------


@pytest.fixture
def bare(tmp_path: Path) -> tuple[Stack, ec2.Vpc]:
    """A fresh stack and VPC for constructs that are refused before any synth."""
    stack = Stack(new_app(tmp_path), "Refused")
    return stack, _vpc(stack)


@pytest.mark.parametrize(
    ("settings", "props", "fix"),
    [
        (OWN, {"image": None}, r"server_mode=own needs your server's image: pass image="),
        (OWN, {"publishers": "backend"}, r"the publish endpoint .* is the reference server's"),
        (OWN, {"scaling": [ScalingSignal.server_connections()]}, r"use connections_per_target\(\)"),
        (Settings(), {"jwt_secret_env": "JWT_KEY"}, r"reference server reads the signing key from STICKYWS_JWT_SECRET"),
        (OWN, {"scaling": []}, r"name at least one signal"),
    ],
)
def test_combinations_that_make_no_sense_are_refused(
    bare: tuple[Stack, ec2.Vpc], settings: Settings, props: dict[str, Any], fix: str
) -> None:
    """Own server without an image, with publishers or on the reference metric, and a renamed reference key fail
    at construction with the fix."""
    stack, vpc = bare
    props = dict(props)
    if props.get("publishers") == "backend":
        props["publishers"] = [ec2.SecurityGroup(stack, "Backend", vpc=vpc)]
    props.setdefault("image", ecs.ContainerImage.from_registry(NODE_IMAGE))
    if props["image"] is None:
        del props["image"]
    with pytest.raises(ValueError, match=fix):
        WebSocketFargateService(stack, "Ws", vpc=vpc, settings=settings, **props)


def test_attach_refuses_an_idle_timeout_below_twice_the_ping(bare: tuple[Stack, ec2.Vpc]) -> None:
    """A load balancer with idle_timeout_s=100 and a service pinging every 60 s each pass alone; attach() refuses
    them together with one message naming both constructs, both settings and the fix."""
    stack, vpc = bare
    web = StickyWebSocketLoadBalancer(
        stack, "Web", vpc=vpc, settings=OWN.with_overrides({"idle_timeout_s": 100}), http_only=True
    )
    service = WebSocketFargateService(
        stack,
        "Node",
        vpc=vpc,
        settings=OWN.with_overrides({"ping_interval_s": 60}),
        image=ecs.ContainerImage.from_registry(NODE_IMAGE),
    )
    with pytest.raises(SettingsMismatchError) as raised:
        web.attach(service.service)
    message = str(raised.value)
    assert message.startswith(
        "the load balancer Refused/Web (its load_balancer and target_group settings) and the service "
        "Refused/Node (its service and server settings) do not fit together:\n1 settings error(s):\n"
    )
    assert "[ping-within-idle-timeout]" in message
    assert "ping_interval_s=60" in message
    assert "set ping_interval_s <= 50 or idle_timeout_s >= 120" in message
    assert [f.rule for f in raised.value.findings] == ["ping-within-idle-timeout"]


def test_attach_does_not_judge_a_ping_the_own_server_is_not_told(bare: tuple[Stack, ec2.Vpc]) -> None:
    """The same values pass when the own server is not told ping_interval_s: the rule is skipped, saying why."""
    stack, vpc = bare
    untold = OWN.with_overrides({"server_env": "port=PORT"})
    web = StickyWebSocketLoadBalancer(
        stack, "Web", vpc=vpc, settings=untold.with_overrides({"idle_timeout_s": 100}), http_only=True
    )
    service = WebSocketFargateService(
        stack,
        "Node",
        vpc=vpc,
        settings=untold.with_overrides({"ping_interval_s": 60}),
        image=ecs.ContainerImage.from_registry(NODE_IMAGE),
    )
    web.attach(service)
    assert skipped_in_stack(stack)["ping-within-idle-timeout"] == (
        "your server is not told ping_interval_s (add it to server_env)"
    )


def test_signals_on_the_target_group_wait_for_attach(bare: tuple[Stack, ec2.Vpc]) -> None:
    """A requests_per_target signal on a service never attached fails the tree validation with the fix."""
    stack, vpc = bare
    service = WebSocketFargateService(
        stack,
        "Node",
        vpc=vpc,
        settings=OWN,
        image=ecs.ContainerImage.from_registry(NODE_IMAGE),
        scaling=[ScalingSignal.cpu(), ScalingSignal.requests_per_target(100)],
    )
    assert service.unwired_signals == (ScalingSignal.requests_per_target(100),)
    (error,) = service.node.validate()
    assert "requests_per_target(100) needs the load balancer's target group" in error
    assert "StickyWebSocketLoadBalancer.attach(service)" in error


@pytest.mark.parametrize(
    ("build", "fix"),
    [
        (lambda: ContainerHealthCheck.command("python", "-c", "x"), "start with 'CMD'"),
        (lambda: ContainerHealthCheck.command("CMD"), "start with 'CMD'"),
        (lambda: ContainerHealthCheck.http("nc"), "use 'wget' or 'curl'"),  # type: ignore[arg-type]
        (lambda: ScalingSignal.cpu(0), "outside 1-100"),
        (lambda: ScalingSignal.requests_per_target(0), "must be at least 1"),
        (lambda: ScalingSignal.metric(cloudwatch.Metric(namespace="N", metric_name="M"), 5, name="a-b"), "letters"),
    ],
)
def test_choices_that_cannot_work_are_refused(build: Any, fix: str) -> None:
    """A health-check command ECS would not run, an unknown probe tool and impossible scaling targets fail early."""
    with pytest.raises(ValueError, match=fix):
        build()


# -- the probes themselves -----------------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["wget", "curl"])
@pytest.mark.parametrize(("status", "exit_code"), [(200, 0), (503, 1)])
def test_http_probe_exits_by_status(tool: str, status: int, exit_code: int) -> None:
    """The wget and curl probes, run by /bin/sh as ECS runs CMD-SHELL, exit 0 on 200 and 1 on 503."""
    from stickyws.localproc import free_port

    port = free_port()
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        kind, line = http_command(OWN.with_overrides({"port": port}), tool)  # type: ignore[arg-type]
        assert kind == "CMD-SHELL"
        proc = subprocess.run(["/bin/sh", "-c", line], capture_output=True, timeout=30, check=False)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert proc.returncode == exit_code, proc.stderr
    assert seen == ["/healthz"]


# -- settings errors in a user's own app ----------------------------------------------------------------


def test_settings_error_in_an_app_ends_with_one_message(tmp_path: Path) -> None:
    """An app.py that does not catch SettingsError exits 1 with 'stickyws: <message>' and no traceback."""
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(
            """\
            from aws_cdk import App, Stack
            from aws_cdk import aws_ec2 as ec2
            from constructs_lib import StickyWebSocketLoadBalancer
            from stickyws.settings import Settings
            app = App()
            stack = Stack(app, "Team")
            vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
            bad = Settings().with_overrides({"http2_enabled": True})
            StickyWebSocketLoadBalancer(stack, "Web", vpc=vpc, settings=bad, http_only=True)
            app.synth()
            """
        ),
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    proc = subprocess.run(
        [sys.executable, str(app)], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env, check=False
    )
    assert proc.returncode == 1
    assert "stickyws: 1 settings error(s):" in proc.stderr
    assert "set http2_enabled=false" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "cdk.out").exists()


def test_other_errors_keep_their_traceback(tmp_path: Path) -> None:
    """Any other uncaught exception still reaches the previous hook (its traceback is printed)."""
    script = tmp_path / "boom.py"
    script.write_text("import constructs_lib\nraise RuntimeError('boom')\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr
    assert "RuntimeError: boom" in proc.stderr


def test_own_server_is_watched_through_the_load_balancer_only(node: Synth) -> None:
    """Your own server's dashboard and alarms read the load balancer and target group, never the reference
    server's metrics, and an info annotation says so."""
    body = dashboard_body(node.json)
    assert "StickyWebSocket" not in json.dumps(body)
    assert {w["properties"]["title"] for w in body["widgets"]} == {
        "Load balancer connections",
        "Alarms",
        "Target health",
        "Errors at the load balancer",
    }
    assert sorted(p["MetricName"] for p in alarms(node.json).values()) == [
        "HTTPCode_ELB_5XX_Count",
        "UnHealthyHostCount",
    ]
    infos = Annotations.from_stack(node.stack).find_info("*", Match.string_like_regexp("dashboard and alarms show"))
    assert len(infos) == 1
