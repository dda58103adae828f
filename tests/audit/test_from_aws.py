"""The live path (boto3) on load balancers built through moto's public API, including one stickyws did not make.

Every read goes through `stickyws.cli.main`, the code path users run; exit 2 cases check that each
way of failing to read (unknown ARN, malformed ARN, missing stack, missing permission, no
credentials, no region, unknown profile, unreachable endpoint) is one line and never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import enable_iam_authentication

from stickyws.audit.checks import Status, audit, catalog, scopes_of
from stickyws.audit.from_aws import read_load_balancer
from stickyws.cli import main
from stickyws.localproc import free_port
from stickyws.settings import Scope, Settings, server_environment, server_labels
from stickyws.testing.aws_env import REGION, fake_aws_environment, no_aws_credentials


@dataclass(frozen=True)
class Alb:
    """ARNs of a load balancer built with the public API."""

    load_balancer: str
    target_group: str


def _attrs(pairs: dict[str, Any]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(v).lower() if isinstance(v, bool) else str(v)} for k, v in pairs.items()]


def build_stickyws_alb(session: Any, settings: Settings, name: str, extra_env: dict[str, str] | None = None) -> Alb:
    """An ALB, target group, Upgrade rule and Fargate service configured from ``settings`` via public calls.

    The server container gets what the constructs render: :func:`server_environment` (plus ``extra_env``) and
    :func:`server_labels` as Docker labels.
    """
    ec2, elbv2, ecs, acm = (session.client(n) for n in ("ec2", "elbv2", "ecs", "acm"))
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
        for i, az in enumerate("ab")
    ]
    alb_sg = ec2.create_security_group(GroupName=f"{name}-alb", Description="alb", VpcId=vpc)["GroupId"]
    task_sg = ec2.create_security_group(GroupName=f"{name}-task", Description="task", VpcId=vpc)["GroupId"]
    port = settings["port"]
    ec2.authorize_security_group_ingress(
        GroupId=task_sg,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "UserIdGroupPairs": [{"GroupId": alb_sg}]}
        ],
    )
    lb = elbv2.create_load_balancer(Name=name, Subnets=subnets, SecurityGroups=[alb_sg])["LoadBalancers"][0]
    lb_arn = lb["LoadBalancerArn"]
    s = settings
    elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=lb_arn,
        Attributes=_attrs(
            {
                "idle_timeout.timeout_seconds": s["idle_timeout_s"],
                "routing.http2.enabled": s["http2_enabled"],
                "client_keep_alive.seconds": s["client_keep_alive_s"],
                "routing.http.drop_invalid_header_fields.enabled": s["drop_invalid_header_fields"],
                "routing.http.desync_mitigation_mode": s["desync_mitigation_mode"],
                "access_logs.s3.enabled": True,
                "access_logs.s3.bucket": "logs",
                "access_logs.s3.prefix": "alb",
            }
        ),
    )
    tg_arn = elbv2.create_target_group(
        Name=f"{name}-tg",
        Protocol="HTTP",
        Port=port,
        VpcId=vpc,
        TargetType="ip",
        HealthCheckPath=s["health_check_path"],
        HealthCheckIntervalSeconds=s["health_check_interval_s"],
        HealthCheckTimeoutSeconds=s["health_check_timeout_s"],
        HealthyThresholdCount=s["healthy_threshold_count"],
        UnhealthyThresholdCount=s["unhealthy_threshold_count"],
        Matcher={"HttpCode": s["health_check_matcher"]},
    )["TargetGroups"][0]["TargetGroupArn"]
    elbv2.modify_target_group_attributes(
        TargetGroupArn=tg_arn,
        Attributes=_attrs(
            {
                "deregistration_delay.timeout_seconds": s["deregistration_delay_s"],
                "stickiness.enabled": s["stickiness_enabled"],
                "stickiness.type": s["stickiness_type"],
                "stickiness.lb_cookie.duration_seconds": s["stickiness_duration_s"],
            }
        ),
    )
    certificate = acm.request_certificate(DomainName=f"{name}.example.com")["CertificateArn"]
    forward = [{"Type": "forward", "TargetGroupArn": tg_arn}]
    listener = elbv2.create_listener(
        LoadBalancerArn=lb_arn,
        Protocol="HTTPS",
        Port=443,
        SslPolicy="ELBSecurityPolicy-TLS13-1-2-2021-06",
        Certificates=[{"CertificateArn": certificate}],
        DefaultActions=forward,
    )["Listeners"][0]["ListenerArn"]
    elbv2.create_rule(
        ListenerArn=listener,
        Priority=1,
        Conditions=[
            {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "Upgrade", "Values": ["websocket"]}}
        ],
        Actions=forward,
    )
    cluster = ecs.create_cluster(clusterName=f"{name}-cluster")["cluster"]["clusterName"]
    environment = {**server_environment(s), **(extra_env or {})}
    ecs.register_task_definition(
        family=name,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu=str(s["task_cpu"]),
        memory=str(s["task_memory_mib"]),
        containerDefinitions=[
            {
                "name": "server",
                "image": "stickyws",
                "stopTimeout": s["stop_timeout_s"],
                "portMappings": [{"containerPort": port}],
                "environment": [{"name": k, "value": v} for k, v in environment.items()],
                "dockerLabels": server_labels(s),
            }
        ],
    )
    ecs.create_service(
        cluster=cluster,
        serviceName=f"{name}-service",
        taskDefinition=name,
        desiredCount=s["desired_count"],
        launchType="FARGATE",
        loadBalancers=[{"targetGroupArn": tg_arn, "containerName": "server", "containerPort": port}],
        networkConfiguration={"awsvpcConfiguration": {"subnets": subnets, "securityGroups": [task_sg]}},
    )
    # moto's create_service ignores these two (toolchain-facts.md); update_service keeps them.
    ecs.update_service(
        cluster=cluster,
        service=f"{name}-service",
        deploymentConfiguration={
            "minimumHealthyPercent": s["min_healthy_percent"],
            "maximumPercent": s["max_percent"],
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        },
        healthCheckGracePeriodSeconds=s["health_check_grace_s"],
    )
    return Alb(lb_arn, tg_arn)


def build_foreign_alb(session: Any) -> Alb:
    """A plain ALB someone else made: HTTP/2 on, idle timeout 50 s, no stickiness, no Upgrade rule, no ECS."""
    ec2, elbv2 = session.client("ec2"), session.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.2.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
        for i, az in enumerate("ab")
    ]
    lb_arn = elbv2.create_load_balancer(Name="foreign", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=lb_arn,
        Attributes=_attrs({"routing.http2.enabled": True, "idle_timeout.timeout_seconds": 50}),
    )
    tg_arn = elbv2.create_target_group(Name="foreign-tg", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip")[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    elbv2.create_listener(
        LoadBalancerArn=lb_arn, Protocol="HTTP", Port=80, DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}]
    )
    return Alb(lb_arn, tg_arn)


@dataclass(frozen=True)
class Account:
    """The module's moto account."""

    session: Any
    sticky: Alb
    foreign: Alb


@pytest.fixture(scope="module")
def account() -> Iterator[Account]:
    """A moto account holding one stickyws-configured ALB and one foreign ALB."""
    with pytest.MonkeyPatch.context() as mp:
        fake_aws_environment(mp)
        with mock_aws():
            session = boto3.Session(region_name=REGION)
            settings = Settings().with_overrides({"idle_timeout_s": 300, "deregistration_delay_s": 90})
            yield Account(session, build_stickyws_alb(session, settings, "sticky"), build_foreign_alb(session))


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["audit", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_any_alb_by_arn_finds_its_service_and_passes(account: Account, capsys: pytest.CaptureFixture[str]) -> None:
    """--load-balancer-arn reads the ALB, finds the ECS service registered with its target group, and passes
    (the registry, neither named nor given to the server, is skipped)."""
    code, out, _ = _cli(["--load-balancer-arn", account.sticky.load_balancer, "--json"], capsys)
    report = json.loads(out)
    assert [r["rule"] for r in report["results"] if r["status"] not in ("pass", "skip")] == []
    skipped = {r["rule"]: r["found"] for r in report["results"] if r["status"] == "skip"}
    assert set(skipped) == {rule for rule, _, _ in catalog() if Scope.REGISTRY in scopes_of(rule)}
    assert skipped["registry-encryption-and-auth"] == (
        "the deployment has no registry (no ElastiCache cache in the stack or named with --registry-id, "
        "no REDIS_URL in the container)"
    )
    assert report["parts"] == ["load_balancer", "server", "service"]
    assert "no ElastiCache registry named or in the stack (not read)" in report["notes"]
    assert code == 0
    assert report["settings"]["idle_timeout_s"] == "300"
    assert report["settings"]["deregistration_delay_s"] == "90"
    assert (
        report["observed"]["min_healthy_percent"]["where"]
        == "ECS service deploymentConfiguration.minimumHealthyPercent"
    )


def test_live_task_definition_labels_say_whose_server_runs(account: Account) -> None:
    """DescribeTaskDefinition's Docker labels are read: an own server is judged on the variables they name, and a
    STICKYWS_* leftover in its environment is ignored instead of failing the drain rule."""
    settings = Settings().with_overrides(
        {"server_mode": "own", "server_env": "port=PORT,ping_interval_s=WS_PING_S", "port": 3000}
    )
    alb = build_stickyws_alb(account.session, settings, "own", {"STICKYWS_DRAIN_WINDOW_S": "500", "NODE_ENV": "x"})
    view = read_load_balancer(account.session, alb.load_balancer)
    assert view.task_definition is not None
    assert view.task_definition.container is not None
    assert view.task_definition.container.labels == {
        "stickyws.server-mode": "own",
        "stickyws.server-env": "port=PORT,ping_interval_s=WS_PING_S",
    }
    assert dict(view.task_definition.container.environment) == {
        "PORT": "3000",
        "WS_PING_S": "30",
        "STICKYWS_DRAIN_WINDOW_S": "500",
    }
    result = audit(view)
    assert result.server_read == {"port": "3000", "ping_interval_s": "30"}
    assert result.result("drain-within-deregistration-delay").found == (
        "your server is not told drain_window_s (add it to server_env)"
    )
    assert result.result("registry-ttl-order").status is Status.SKIP
    assert result.failed() == []


def test_target_group_arn_alone_reads_the_same_deployment(account: Account) -> None:
    """--target-group-arn finds its load balancer and reads the same view as --load-balancer-arn."""
    from stickyws.audit.from_aws import read_target_group

    by_tg = read_target_group(account.session, account.sticky.target_group)
    by_lb = read_load_balancer(account.session, account.sticky.load_balancer)
    assert (by_tg.load_balancer, by_tg.target_group, by_tg.service, by_tg.task_definition) == (
        by_lb.load_balancer,
        by_lb.target_group,
        by_lb.service,
        by_lb.task_definition,
    )
    assert by_lb.target_group is not None
    assert by_lb.target_group.id == account.sticky.target_group


def test_foreign_alb_fails_on_what_it_shows_and_warns_on_what_it_hides(
    account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    """A foreign ALB fails HTTP/2, stickiness and the Upgrade rule; rules about a server it does not show are
    skipped, and judged once --assume vouches for the server's settings."""
    code, out, err = _cli(["--load-balancer-arn", account.foreign.load_balancer], capsys)
    assert (code, err) == (1, "")
    view = read_load_balancer(account.session, account.foreign.load_balancer)
    result = audit(view)
    assert result.failed() == ["http2-off", "stickiness", "upgrade-rule"]
    ping = result.result("ping-within-idle-timeout")
    assert (ping.status, ping.found) == (Status.SKIP, "the deployment has no server")
    assert result.result("deployment-circuit-breaker").found == (
        "the deployment has no ECS service (none registered with the target group was read)"
    )
    assert audit(view, {"ping_interval_s": "20"}).result("ping-within-idle-timeout").status is Status.PASS
    assert audit(view, {"ping_interval_s": "40"}).result("ping-within-idle-timeout").status is Status.FAIL
    assert "no ECS service in this account and region is registered with the target group" in result.notes
    assert "http2-off" in out
    assert "stickiness" in out


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (
            [
                "--load-balancer-arn",
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/nope/0123456789abcdef",
            ],
            "LoadBalancerNotFound",
        ),
        (["--load-balancer-arn", "not-an-arn"], "cannot describe load balancer not-an-arn"),
        (
            [
                "--target-group-arn",
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/nope/0123456789abcdef",
            ],
            "TargetGroupNotFound",
        ),
        (["--stack-name", "NoSuchStack"], "cannot list the resources of stack NoSuchStack"),
    ],
    ids=["unknown-alb", "malformed-arn", "unknown-target-group", "unknown-stack"],
)
def test_unreadable_source_exits_2(
    account: Account, capsys: pytest.CaptureFixture[str], args: list[str], reason: str
) -> None:
    """A source AWS cannot find exits 2 with a one-line reason and no traceback."""
    code, out, err = _cli(args, capsys)
    assert (code, out) == (2, "")
    assert err.startswith("stickyws: cannot ")
    assert reason in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_missing_permission_exits_2(account: Account, capsys: pytest.CaptureFixture[str]) -> None:
    """An IAM user without elasticloadbalancing:Describe* gets exit 2 naming the denied call."""
    iam = account.session.client("iam")
    iam.create_user(UserName="auditor-without-rights")
    key = iam.create_access_key(UserName="auditor-without-rights")["AccessKey"]
    with pytest.MonkeyPatch.context() as mp, enable_iam_authentication():
        mp.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        mp.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        code, out, err = _cli(["--load-balancer-arn", account.sticky.load_balancer], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"stickyws: no permission to describe load balancer {account.sticky.load_balancer}")
    assert "(DescribeLoadBalancers)" in err
    assert err.count("\n") == 1


@pytest.fixture
def dead_endpoint(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fake environment whose AWS endpoint is a closed loopback port: any request that escapes fails there."""
    fake_aws_environment(monkeypatch)
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    return url


def test_no_credentials_exits_2(
    dead_endpoint: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without credentials the audit exits 2 and says how to provide them."""
    no_aws_credentials(monkeypatch)
    code, _, err = _cli(["--stack-name", "S"], capsys)
    assert code == 2
    assert err == (
        "stickyws: cannot list the resources of stack S: no AWS credentials found; "
        "set AWS_PROFILE (or --profile) or AWS_ACCESS_KEY_ID\n"
    )


def test_no_region_exits_2(
    dead_endpoint: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a region the audit exits 2 and asks for --region."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    code, _, err = _cli(["--stack-name", "S"], capsys)
    assert code == 2
    assert err == "stickyws: cannot create a cloudformation client: no AWS region; pass --region or set AWS_REGION\n"


def test_unknown_profile_exits_2(dead_endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown --profile exits 2 naming the profile."""
    code, _, err = _cli(["--stack-name", "S", "--profile", "nobody"], capsys)
    assert code == 2
    assert err == "stickyws: AWS profile 'nobody' not found; check --profile or AWS_PROFILE\n"


def test_unreachable_endpoint_exits_2(dead_endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An endpoint nobody listens on exits 2 naming the endpoint."""
    code, _, err = _cli(["--stack-name", "S", "--region", REGION], capsys)
    assert code == 2
    assert err.startswith("stickyws: cannot list the resources of stack S: cannot reach ")
    assert dead_endpoint in err
    assert err.count("\n") == 1


def test_service_search_is_bounded(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    """The search for the target group's ECS service stops at MAX_SCAN_CALLS and says so."""
    from stickyws.audit import from_aws

    monkeypatch.setattr(from_aws, "MAX_SCAN_CALLS", 2)
    view = read_load_balancer(account.session, account.sticky.load_balancer)
    assert view.service is None
    assert "stopped searching ECS services after about 2 calls" in view.notes


def _replication_group(session: Any, group_id: str, **props: Any) -> None:
    session.client("elasticache").create_replication_group(
        ReplicationGroupId=group_id,
        ReplicationGroupDescription="stickyws registry",
        Engine="valkey",
        CacheNodeType="cache.t4g.small",
        AutomaticFailoverEnabled=True,
        MultiAZEnabled=True,
        **props,
    )


def test_registry_by_id_reports_mode_tls_and_auth(account: Account, capsys: pytest.CaptureFixture[str]) -> None:
    """--registry-id reads the replication group: cluster mode, shards, replicas, TLS and an AUTH token are reported."""
    _replication_group(
        account.session, "reg-cluster", NumNodeGroups=3, ReplicasPerNodeGroup=2, ClusterMode="enabled",
        TransitEncryptionEnabled=True, TransitEncryptionMode="required", AtRestEncryptionEnabled=True,
        AuthToken="a" * 32,
    )  # fmt: skip
    code, out, _ = _cli(
        ["--load-balancer-arn", account.sticky.load_balancer, "--registry-id", "reg-cluster", "--json"], capsys
    )
    report = json.loads(out)
    results = {r["rule"]: r for r in report["results"]}
    registry = results["registry-encryption-and-auth"]
    assert (registry["status"], registry["found"]) == (
        "pass",
        "cluster reg-cluster (3 shards x 2 replicas): TLS required, encrypted at rest, auth token",
    )
    assert {n: report["settings"][n] for n in ("registry_mode", "registry_shards", "registry_auth")} == {
        "registry_mode": "cluster",
        "registry_shards": "3",
        "registry_auth": "token",
    }
    assert report["observed"]["registry_replicas_per_shard"]["value"] == "2"
    # The container was rendered from the defaults (single, iam): the audit says the two disagree.
    assert results["app-settings-match"]["status"] == "fail"
    assert "registry_mode: deployment cluster" in results["app-settings-match"]["found"]
    assert code == 1


def test_registry_without_tls_fails(account: Account, capsys: pytest.CaptureFixture[str]) -> None:
    """A registry without encryption in transit fails its check with the fix."""
    _replication_group(account.session, "reg-plain", NumCacheClusters=2)
    code, out, _ = _cli(
        ["--load-balancer-arn", account.sticky.load_balancer, "--registry-id", "reg-plain", "--json"], capsys
    )
    registry = next(r for r in json.loads(out)["results"] if r["rule"] == "registry-encryption-and-auth")
    assert registry["status"] == "fail"
    # moto creates one member whatever NumCacheClusters says, so the group reads as a primary without replicas.
    assert registry["found"] == "single reg-plain (0 replicas): no TLS, not encrypted at rest, auth none"
    assert (
        registry["fix"]
        == "set TransitEncryptionEnabled=true with TransitEncryptionMode=required (ConnectionRegistry does)"
    )
    assert code == 1


def test_unknown_registry_is_a_note_not_a_crash(account: Account) -> None:
    """A replication group id that names nothing leaves no registry and a note naming the AWS error."""
    from stickyws.audit.from_aws import read_registry

    registry, notes = read_registry(account.session, "nope", serverless=False)
    assert registry is None
    assert len(notes) == 1
    assert notes[0].startswith("registry nope not read: cannot describe ElastiCache replication group nope: ")
    assert "ReplicationGroupNotFound" in notes[0]


def test_moto_lacks_user_groups_and_serverless_caches(account: Account) -> None:
    """moto 5.2 implements neither DescribeUserGroups nor DescribeServerlessCaches: those live reads are proven on
    templates only (tests/audit/test_template_audit.py); this pin flips when moto adds them."""
    client = account.session.client("elasticache")
    with pytest.raises(NotImplementedError, match="describe_user_groups"):
        client.describe_user_groups(UserGroupId="any")
    with pytest.raises(NotImplementedError, match="describe_serverless_caches"):
        client.describe_serverless_caches(ServerlessCacheName="any")
