"""StickyWebSocketLoadBalancer: every setting reaches the template, by value.

GIVEN the reference synth (default settings, a certificate ARN) or one small stack with
non-default settings, WHEN synthesized, THEN the ALB, listeners, rule and target group carry
exactly the values of the settings model. Values that differ from AWS's defaults are asserted
explicitly, so a construct that silently dropped a setting would fail here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2_targets as elbv2_targets
from aws_cdk import aws_route53 as route53
from aws_cdk.assertions import Annotations, Match, Template

from constructs_lib.load_balancer import (
    HTTP_ONLY_WARNING_ID,
    LOG_DELIVERY_SERVICE_PRINCIPAL,
    SOCKET_IO_PATHS,
    StickyWebSocketLoadBalancer,
)
from stickyws.settings import Settings, SettingsError
from tests.cdk_reference import REFERENCE_CERTIFICATE_ARN, new_app

pytestmark = pytest.mark.synth

ALB = "AWS::ElasticLoadBalancingV2::LoadBalancer"
TG = "AWS::ElasticLoadBalancingV2::TargetGroup"
LISTENER = "AWS::ElasticLoadBalancingV2::Listener"
RULE = "AWS::ElasticLoadBalancingV2::ListenerRule"

#: AWS's own defaults for the values this project changes (alb-websocket-facts.md).
AWS_DEFAULTS = {
    "idle_timeout.timeout_seconds": "60",
    "routing.http2.enabled": "true",
    "routing.http.drop_invalid_header_fields.enabled": "false",
    "deregistration_delay.timeout_seconds": "300",
    "HealthyThresholdCount": 5,
    "UnhealthyThresholdCount": 2,
}

#: Non-default settings of the second synth: every one differs from the model's default.
NON_DEFAULT = {
    "idle_timeout_s": 300,
    "client_keep_alive_s": 7200,
    "drop_invalid_header_fields": False,
    "desync_mitigation_mode": "strictest",
    "deregistration_delay_s": 90,
    "stickiness_type": "app_cookie",
    "app_cookie_name": "WSSESSION",
    "stickiness_duration_s": 3600,
    "health_check_path": "/ready",
    "health_check_interval_s": 10,
    "health_check_timeout_s": 4,
    "healthy_threshold_count": 3,
    "unhealthy_threshold_count": 4,
    "health_check_matcher": "200-299",
    "port": 9000,
}


def _attributes(resource: dict[str, Any], key: str) -> dict[str, Any]:
    return {a["Key"]: a["Value"] for a in resource["Properties"][key]}


def _only(template_json: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [r for r in template_json["Resources"].values() if r["Type"] == type_]
    assert len(found) == 1, f"expected one {type_}, found {len(found)}"
    return found[0]


class _Synth:
    """A small stack holding only the load balancer construct."""

    def __init__(self, outdir: Path, **props: Any) -> None:
        self.app = new_app(outdir)
        self.stack = Stack(self.app, "LoadBalancerOnly")
        self.vpc = ec2.Vpc(self.stack, "Vpc", max_azs=2, nat_gateways=0)
        self.web = StickyWebSocketLoadBalancer(self.stack, "Web", vpc=self.vpc, **props)

    def template(self) -> Template:
        return Template.from_stack(self.stack)


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> tuple[_Synth, dict[str, Any]]:
    """One synth with non-default settings, HTTP-only and internal."""
    settings = Settings().with_overrides(NON_DEFAULT)
    synth = _Synth(tmp_path_factory.mktemp("lb-custom"), settings=settings, http_only=True, internet_facing=False)
    synth.web.attach(elbv2_targets.IpTarget("10.0.3.7"))
    return synth, synth.template().to_json()


# -- reference synth: default settings ------------------------------------------------------------


def test_alb_attributes_are_the_settings_defaults(reference_template_json: dict[str, Any]) -> None:
    """The reference ALB has HTTP/2 off, idle 120 s, keep-alive 3600 s, invalid headers dropped, desync defensive."""
    attrs = _attributes(_only(reference_template_json, ALB), "LoadBalancerAttributes")
    assert attrs["routing.http2.enabled"] == "false"
    assert attrs["idle_timeout.timeout_seconds"] == "120"
    assert attrs["client_keep_alive.seconds"] == "3600"
    assert attrs["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attrs["routing.http.desync_mitigation_mode"] == "defensive"
    for key in (
        "routing.http2.enabled",
        "idle_timeout.timeout_seconds",
        "routing.http.drop_invalid_header_fields.enabled",
    ):
        assert attrs[key] != AWS_DEFAULTS[key]


def test_alb_is_internet_facing_in_public_subnets(reference_template: Template) -> None:
    """The reference ALB is internet-facing."""
    reference_template.has_resource_properties(ALB, {"Scheme": "internet-facing", "Type": "application"})


def test_access_and_connection_logs_go_to_the_log_bucket(reference_template_json: dict[str, Any]) -> None:
    """Access logs and connection logs are on, each with its prefix, in the construct's bucket."""
    attrs = _attributes(_only(reference_template_json, ALB), "LoadBalancerAttributes")
    bucket_ids = [k for k, r in reference_template_json["Resources"].items() if r["Type"] == "AWS::S3::Bucket"]
    log_bucket = next(b for b in bucket_ids if "LogBucket" in b)
    assert attrs["access_logs.s3.enabled"] == "true"
    assert attrs["access_logs.s3.bucket"] == {"Ref": log_bucket}
    assert attrs["access_logs.s3.prefix"] == "access"
    assert attrs["connection_logs.s3.enabled"] == "true"
    assert attrs["connection_logs.s3.bucket"] == {"Ref": log_bucket}
    assert attrs["connection_logs.s3.prefix"] == "connection"


def test_log_bucket_is_encrypted_private_and_tls_only(reference_template_json: dict[str, Any]) -> None:
    """The log bucket uses SSE-S3, blocks all public access and its policy denies non-TLS requests."""
    resources = reference_template_json["Resources"]
    bucket_id = next(k for k, r in resources.items() if r["Type"] == "AWS::S3::Bucket" and "LogBucket" in k)
    props = resources[bucket_id]["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    ]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    policy = next(
        r
        for r in resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket_id}
    )
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    deny = [s for s in statements if s["Effect"] == "Deny"]
    assert deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny[0]["Action"] == "s3:*"
    # The service principal (newer regions) and the regional ELB account (older ones) may share a
    # statement: the minimizePolicies feature flag merges statements with the same action and resources.
    delivery = [s for s in statements if s["Effect"] == "Allow" and s["Action"] == "s3:PutObject"]
    assert [s["Principal"].get("Service") for s in delivery if "Service" in s["Principal"]] == [
        LOG_DELIVERY_SERVICE_PRINCIPAL
    ]
    assert any("Fn::If" in s["Principal"].get("AWS", {}) for s in delivery)
    prefixes = sorted(
        part
        for s in delivery
        for resource in s["Resource"]
        for part in resource["Fn::Join"][1]
        if isinstance(part, str) and "AWSLogs" in part
    )
    assert prefixes == ["/access/AWSLogs/", "/connection/AWSLogs/"]


def test_log_delivery_account_is_chosen_per_region_at_deploy(reference_template_json: dict[str, Any]) -> None:
    """An env-agnostic template grants the regional ELB account through a region mapping and a condition."""
    mapping = next(iter(reference_template_json["Mappings"].values()))
    assert mapping["us-east-1"] == {"account": "127311923021"}
    assert mapping["eu-west-1"] == {"account": "156460612806"}
    assert any("RegionHasElbLogAccount" in name for name in reference_template_json["Conditions"])


def test_https_listener_uses_certificate_and_tls13_policy(reference_template: Template) -> None:
    """Port 443 is HTTPS with the given certificate and a TLS 1.3 policy, forwarding to the target group."""
    reference_template.has_resource_properties(
        LISTENER,
        {
            "Port": 443,
            "Protocol": "HTTPS",
            "Certificates": [{"CertificateArn": REFERENCE_CERTIFICATE_ARN}],
            "SslPolicy": Match.string_like_regexp("TLS13"),
            "DefaultActions": [Match.object_like({"Type": "forward"})],
        },
    )


def test_http_listener_redirects_to_https(reference_template: Template) -> None:
    """Port 80 answers with a permanent redirect to HTTPS on 443."""
    reference_template.has_resource_properties(
        LISTENER,
        {
            "Port": 80,
            "Protocol": "HTTP",
            "DefaultActions": [
                {"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}
            ],
        },
    )


def test_upgrade_rule_forwards_websocket_handshakes(reference_template_json: dict[str, Any]) -> None:
    """Priority 1 matches `Upgrade: websocket` and forwards to the target group on the HTTPS listener."""
    resources = reference_template_json["Resources"]
    rule = _only(reference_template_json, RULE)["Properties"]
    assert rule["Priority"] == 1
    assert rule["Conditions"] == [
        {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "Upgrade", "Values": ["websocket"]}}
    ]
    tg_id = next(k for k, r in resources.items() if r["Type"] == TG)
    assert rule["Actions"] == [{"Type": "forward", "TargetGroupArn": {"Ref": tg_id}}]
    assert resources[rule["ListenerArn"]["Ref"]]["Properties"]["Protocol"] == "HTTPS"


def test_target_group_health_check_and_protocol(reference_template_json: dict[str, Any]) -> None:
    """IP targets over HTTP/1.1 on port 8080; health check /health every 30 s, timeout 5, 2 up / 3 down, 200."""
    props = _only(reference_template_json, TG)["Properties"]
    assert props["TargetType"] == "ip"
    assert props["Protocol"] == "HTTP"
    assert props["ProtocolVersion"] == "HTTP1"
    assert props["Port"] == 8080
    assert props["HealthCheckPath"] == "/health"
    assert props["HealthCheckProtocol"] == "HTTP"
    assert props["HealthCheckIntervalSeconds"] == 30
    assert props["HealthCheckTimeoutSeconds"] == 5
    assert props["HealthyThresholdCount"] == 2
    assert props["UnhealthyThresholdCount"] == 3
    assert props["Matcher"] == {"HttpCode": "200"}
    assert props["HealthyThresholdCount"] != AWS_DEFAULTS["HealthyThresholdCount"]
    assert props["UnhealthyThresholdCount"] != AWS_DEFAULTS["UnhealthyThresholdCount"]


def test_target_group_stickiness_and_deregistration(reference_template_json: dict[str, Any]) -> None:
    """lb_cookie stickiness for 86400 s and a 60 s deregistration delay (AWS default 300)."""
    attrs = _attributes(_only(reference_template_json, TG), "TargetGroupAttributes")
    assert attrs["stickiness.enabled"] == "true"
    assert attrs["stickiness.type"] == "lb_cookie"
    assert attrs["stickiness.lb_cookie.duration_seconds"] == "86400"
    assert attrs["deregistration_delay.timeout_seconds"] == "60"
    assert attrs["deregistration_delay.timeout_seconds"] != AWS_DEFAULTS["deregistration_delay.timeout_seconds"]


def test_reference_values_are_the_model_defaults() -> None:
    """The literals asserted above are the settings model's defaults (so a model change shows up here)."""
    s = Settings()
    assert (s["idle_timeout_s"], s["client_keep_alive_s"], s["http2_enabled"]) == (120, 3600, False)
    assert (s["deregistration_delay_s"], s["stickiness_duration_s"], s["stickiness_type"]) == (60, 86400, "lb_cookie")
    assert (s["health_check_interval_s"], s["health_check_timeout_s"]) == (30, 5)
    assert (s["healthy_threshold_count"], s["unhealthy_threshold_count"], s["health_check_matcher"]) == (2, 3, "200")
    assert s["port"] == 8080


# -- second synth: non-default settings, HTTP-only, internal ---------------------------------------


def test_custom_alb_attributes(custom: tuple[_Synth, dict[str, Any]]) -> None:
    """Non-default idle timeout, keep-alive, header dropping and desync mode reach the ALB."""
    attrs = _attributes(_only(custom[1], ALB), "LoadBalancerAttributes")
    assert attrs["idle_timeout.timeout_seconds"] == "300"
    assert attrs["client_keep_alive.seconds"] == "7200"
    assert attrs["routing.http.drop_invalid_header_fields.enabled"] == "false"
    assert attrs["routing.http.desync_mitigation_mode"] == "strictest"
    assert attrs["routing.http2.enabled"] == "false"


def test_custom_target_group(custom: tuple[_Synth, dict[str, Any]]) -> None:
    """app_cookie stickiness, deregistration 90 s, the custom health check and port 9000 reach the target group."""
    tg = _only(custom[1], TG)
    attrs = _attributes(tg, "TargetGroupAttributes")
    assert attrs["stickiness.type"] == "app_cookie"
    assert attrs["stickiness.app_cookie.cookie_name"] == "WSSESSION"
    assert attrs["stickiness.app_cookie.duration_seconds"] == "3600"
    assert attrs["deregistration_delay.timeout_seconds"] == "90"
    props = tg["Properties"]
    assert props["Port"] == 9000
    assert props["HealthCheckPath"] == "/ready"
    assert (props["HealthCheckIntervalSeconds"], props["HealthCheckTimeoutSeconds"]) == (10, 4)
    assert (props["HealthyThresholdCount"], props["UnhealthyThresholdCount"]) == (3, 4)
    assert props["Matcher"] == {"HttpCode": "200-299"}
    assert props["Targets"] == [{"Id": "10.0.3.7"}]  # an IP target without a port uses the group's port


def test_http_only_mode_has_one_forwarding_listener_and_warns(custom: tuple[_Synth, dict[str, Any]]) -> None:
    """HTTP-only mode: a single port-80 HTTP listener forwarding to the target group, and a synth warning."""
    synth, template_json = custom
    listener = _only(template_json, LISTENER)["Properties"]
    assert (listener["Port"], listener["Protocol"]) == (80, "HTTP")
    assert listener["DefaultActions"][0]["Type"] == "forward"
    warnings = Annotations.from_stack(synth.stack).find_warning("*", Match.string_like_regexp("HTTP-only"))
    assert len(warnings) == 1
    assert HTTP_ONLY_WARNING_ID in warnings[0].entry.data
    assert synth.web.url.startswith("http://")
    assert synth.web.websocket_url.startswith("ws://")
    assert synth.web.websocket_url.endswith("/ws")


def test_internal_alb_admits_only_the_vpc(custom: tuple[_Synth, dict[str, Any]]) -> None:
    """An internal ALB is scheme internal and its security group admits the VPC CIDR, not 0.0.0.0/0."""
    template_json = custom[1]
    assert _only(template_json, ALB)["Properties"]["Scheme"] == "internal"
    sg = next(r for r in template_json["Resources"].values() if r["Type"] == "AWS::EC2::SecurityGroup")["Properties"]
    ingress = sg["SecurityGroupIngress"]
    assert len(ingress) == 1
    assert ingress[0]["FromPort"] == 80
    assert (
        ingress[0]["CidrIp"] == {"Fn::GetAtt": [Match.any_value(), "CidrBlock"]} or "Fn::GetAtt" in ingress[0]["CidrIp"]
    )
    assert all(rule.get("CidrIp") != "0.0.0.0/0" for rule in ingress)


# -- certificates from a domain and hosted zone -----------------------------------------------------


def test_domain_and_zone_create_a_dns_validated_certificate_and_alias(tmp_path: Path) -> None:
    """domain_name + hosted_zone: a DNS-validated ACM certificate on the HTTPS listener and an alias A record."""
    app = new_app(tmp_path)
    stack = Stack(app, "WithDomain")
    zone = route53.HostedZone.from_hosted_zone_attributes(stack, "Zone", hosted_zone_id="Z123", zone_name="example.com")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    web = StickyWebSocketLoadBalancer(
        stack, "Web", vpc=vpc, settings=Settings(), domain_name="ws.example.com", hosted_zone=zone
    )
    template = Template.from_stack(stack)
    template.has_resource_properties(
        "AWS::CertificateManager::Certificate",
        {
            "DomainName": "ws.example.com",
            "ValidationMethod": "DNS",
            "DomainValidationOptions": [{"DomainName": "ws.example.com", "HostedZoneId": "Z123"}],
        },
    )
    template.has_resource_properties("AWS::Route53::RecordSet", {"Name": "ws.example.com.", "Type": "A"})
    assert web.url == "https://ws.example.com"
    assert web.websocket_url == "wss://ws.example.com/ws"


# -- refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("props", "fix"),
    [
        ({}, "pass certificate_arn="),
        ({"http_only": True, "certificate_arn": REFERENCE_CERTIFICATE_ARN}, "drop certificate_arn"),
        ({"domain_name": "ws.example.com"}, "hosted_zone="),
        ({"upgrade_rule_priority": 0}, "outside 1-50000"),
    ],
)
def test_impossible_props_fail_with_the_fix(tmp_path: Path, props: dict[str, Any], fix: str) -> None:
    """A combination of props that cannot work raises ValueError naming the fix."""
    app = new_app(tmp_path)
    stack = Stack(app, "Refused")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    with pytest.raises(ValueError, match=fix):
        StickyWebSocketLoadBalancer(stack, "Web", vpc=vpc, settings=Settings(), **props)


def test_settings_errors_stop_the_construct(tmp_path: Path) -> None:
    """Settings with an error (HTTP/2 on) raise SettingsError that names the setting and the fix."""
    app = new_app(tmp_path)
    stack = Stack(app, "BadSettings")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    bad = Settings().with_overrides({"http2_enabled": True})
    with pytest.raises(SettingsError, match=r"http2_enabled.*set http2_enabled=false"):
        StickyWebSocketLoadBalancer(stack, "Web", vpc=vpc, settings=bad, http_only=True)


def test_settings_warnings_are_annotated_once_per_stack(tmp_path: Path) -> None:
    """A warning finding (server pings off) becomes one warning annotation per stack, however many constructs
    apply the same settings."""
    from constructs import Construct

    from constructs_lib.settings_check import annotation_id, apply_settings

    app = new_app(tmp_path)
    stack = Stack(app, "Warned")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    settings = Settings().with_overrides({"ping_interval_s": "off"})
    web = StickyWebSocketLoadBalancer(stack, "Web", vpc=vpc, settings=settings, http_only=True)
    other = Construct(stack, "Other")
    apply_settings(other, settings)
    expected = annotation_id("ping-within-idle-timeout")
    found = [
        str(m.data)
        for node in (web, other)
        for m in node.node.metadata
        if m.type == "aws:cdk:warning" and expected in str(m.data)
    ]
    assert len(found) == 1
    assert "set ping_interval_s to at most 60" in found[0]
    with pytest.raises(SettingsError, match="http2_enabled"):
        apply_settings(other, settings.with_overrides({"http2_enabled": True}))


@pytest.mark.parametrize(
    ("region", "account"),
    [("eu-west-1", "156460612806"), ("il-central-1", None)],
)
def test_log_delivery_account_is_fixed_when_the_region_is_known(
    tmp_path: Path, region: str, account: str | None
) -> None:
    """With a known region the bucket policy names that region's ELB account (or none for newer regions),
    with no mapping or condition."""
    from aws_cdk import Environment

    app = new_app(tmp_path, {f"availability-zones:account=123456789012:region={region}": [f"{region}a", f"{region}b"]})
    stack = Stack(app, "Regional", env=Environment(account="123456789012", region=region))
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    StickyWebSocketLoadBalancer(stack, "Web", vpc=vpc, settings=Settings(), http_only=True)
    template_json = Template.from_stack(stack).to_json()
    assert "Mappings" not in template_json
    assert "Conditions" not in template_json
    policy = _only(template_json, "AWS::S3::BucketPolicy")["Properties"]["PolicyDocument"]
    principals = json.dumps([s["Principal"] for s in policy["Statement"] if s["Effect"] == "Allow"])
    assert LOG_DELIVERY_SERVICE_PRINCIPAL in principals
    if account is not None:
        assert f":iam::{account}:root" in principals
    else:
        assert "iam::" not in principals.replace(":iam::123456789012:root", "")


# -- polling transports (Socket.IO) -----------------------------------------------------------------


def test_socket_io_paths_reach_the_same_sticky_target_group(tmp_path: Path) -> None:
    """polling_paths=SOCKET_IO_PATHS adds a path rule (priority 2) to the one sticky target group, also on a
    listener the construct did not create; the upgrade rule stays priority 1."""
    synth = _Synth(tmp_path, settings=Settings(), http_only=True, polling_paths=SOCKET_IO_PATHS)
    template_json = synth.template().to_json()
    resources = template_json["Resources"]
    rules = sorted((r["Properties"] for r in resources.values() if r["Type"] == RULE), key=lambda r: r["Priority"])
    tg_id = next(k for k, r in resources.items() if r["Type"] == TG)
    forward = [{"Type": "forward", "TargetGroupArn": {"Ref": tg_id}}]
    upgrade = {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "Upgrade", "Values": ["websocket"]}}
    assert [(r["Priority"], r["Conditions"], r["Actions"]) for r in rules] == [
        (1, [upgrade], forward),
        (2, [{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/socket.io/*"]}}], forward),
    ]
    assert rules[0]["ListenerArn"] == rules[1]["ListenerArn"]
    attributes = _attributes(_only(template_json, TG), "TargetGroupAttributes")
    assert attributes["stickiness.enabled"] == "true"
    assert attributes["stickiness.type"] == "lb_cookie"
    assert attributes["stickiness.lb_cookie.duration_seconds"] == str(Settings()["stickiness_duration_s"])
    assert synth.web.polling_rule is not None

    shared = _Synth(tmp_path / "shared", settings=Settings(), http_only=True)
    StickyWebSocketLoadBalancer(
        shared.stack,
        "Chat",
        vpc=shared.vpc,
        settings=Settings(),
        listener=shared.web.listener,
        load_balancer=shared.web.load_balancer,
        upgrade_rule_priority=10,
        polling_paths=["/socket.io/*", "/chat/socket.io/*"],
        polling_rule_priority=20,
    )
    chat = [
        r["Properties"]
        for k, r in shared.template().to_json()["Resources"].items()
        if r["Type"] == RULE and k.startswith("Chat")
    ]
    assert sorted((r["Priority"], r["Conditions"][0]["Field"]) for r in chat) == [
        (10, "http-header"),
        (20, "path-pattern"),
    ]
    assert shared.web.polling_rule is None
    assert len([r for r in shared.template().to_json()["Resources"].values() if r["Type"] == RULE]) == 3


def test_socket_io_settings_follow_the_same_stickiness_rule(tmp_path: Path) -> None:
    """With polling paths, stickiness that is off is refused by the load balancer alone; stickiness shorter than
    the client's reconnect backoff is refused once a service whose clients have that backoff is attached."""
    with pytest.raises(SettingsError, match=r"\[stickiness\] stickiness_enabled=false"):
        _Synth(
            tmp_path,
            settings=Settings().with_overrides({"stickiness_enabled": False}),
            http_only=True,
            polling_paths=SOCKET_IO_PATHS,
        )
    from aws_cdk import aws_ecs as ecs

    from constructs_lib.service import WebSocketFargateService

    short = Settings().with_overrides({"stickiness_duration_s": 5, "reconnect_cap_s": 30})
    synth = _Synth(tmp_path / "short", settings=short, http_only=True, polling_paths=SOCKET_IO_PATHS)
    service = WebSocketFargateService(
        synth.stack,
        "Ws",
        vpc=synth.vpc,
        settings=short,
        image=ecs.ContainerImage.from_registry("public.ecr.aws/example/ws-server:1.2.3"),
    )
    with pytest.raises(SettingsError, match=r"stickiness_duration_s=5 < reconnect_cap_s=30"):
        synth.web.attach(service)


@pytest.mark.parametrize(
    ("props", "fix"),
    [
        ({"polling_paths": "/socket.io/*"}, "pass a list"),
        ({"polling_paths": ["socket.io/*"]}, "start with /"),
        ({"polling_paths": ["/a b"]}, "not an ALB path pattern"),
        ({"polling_paths": [f"/p{i}" for i in range(6)]}, "at most 5"),
        ({"polling_paths": SOCKET_IO_PATHS, "polling_rule_priority": 1}, "is the upgrade rule's"),
        ({"polling_paths": SOCKET_IO_PATHS, "polling_rule_priority": 50_001}, "outside 1-50000"),
    ],
)
def test_impossible_polling_props_fail_with_the_fix(tmp_path: Path, props: dict[str, Any], fix: str) -> None:
    """Polling paths the ALB would reject, or a priority clash, raise ValueError naming the fix."""
    with pytest.raises(ValueError, match=fix):
        _Synth(tmp_path, settings=Settings(), http_only=True, **props)
