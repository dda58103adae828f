"""The reference stack: every stickyws construct composed into one deployable service.

It only composes constructs and wires them together; every value comes from the settings model
or from the stack's props (see docs/iac.md for what it creates and the context names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_route53 as route53
from constructs import Construct

from constructs_lib import (
    ConnectionRegistry,
    DrainNotifier,
    StickyWebSocketLoadBalancer,
    WebSocketFargateService,
    WebSocketObservability,
    apply_settings,
)
from stickyws.settings import Settings


class Outputs:
    """CfnOutput ids of the reference stack, shared by the stack, the docs and the tests."""

    URL: Final = "Url"
    WEBSOCKET_URL: Final = "WebSocketUrl"
    LOAD_BALANCER_ARN: Final = "LoadBalancerArn"
    TARGET_GROUP_ARN: Final = "TargetGroupArn"
    CLUSTER_NAME: Final = "ClusterName"
    SERVICE_NAME: Final = "ServiceName"
    REGISTRY_ENDPOINT: Final = "RegistryEndpoint"
    #: Blue/green, linear and canary only: the green target group and the test lane's URL.
    ALTERNATE_TARGET_GROUP_ARN: Final = "AlternateTargetGroupArn"
    TEST_WEBSOCKET_URL: Final = "TestWebSocketUrl"


@dataclass(frozen=True)
class HostedZoneRef:
    """A Route 53 hosted zone named by id and name; imported without a lookup (offline synth)."""

    zone_id: str
    zone_name: str


#: Availability zones the VPC spans (an ALB needs two).
MAX_AZS: Final = 2


class StickyWebSocketStack(Stack):
    """VPC, sticky WebSocket ALB, Fargate service, connection registry, drain notifier and observability.

    :param settings: the deployment's settings (``stickyws.settings.resolve`` of the CDK context;
        ``deployment_strategy`` chooses rolling, blue/green, linear or canary, docs/deployments.md);
        every rule is judged here once, then each construct judges its own parts. The stack runs the
        reference server (its image, registry, drain notifier and publish endpoint), so
        ``server_mode=own`` is refused by its service: compose the constructs in your own stack for
        your own server (docs/iac.md).
    :param certificate_arn: ACM certificate of the HTTPS listener.
    :param domain_name: DNS name of the service; with ``hosted_zone`` a DNS-validated certificate and
        an alias record are created.
    :param hosted_zone: Route 53 zone of ``domain_name`` (id and name; no lookup).
    :param http_only: demo mode without TLS (a synth warning says so). Default ``False``.
    :param internet_facing: internet-facing ALB (default) or internal.
    :param registry_url: use this existing Redis/Valkey endpoint instead of creating a cache (its
        credentials, if any, travel in the URL).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        settings: Settings,
        certificate_arn: str | None = None,
        domain_name: str | None = None,
        hosted_zone: HostedZoneRef | None = None,
        http_only: bool = False,
        internet_facing: bool = True,
        registry_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        # Every part of the deployment is here: judge all rules once, so errors come in one message.
        apply_settings(self, settings)
        zone = (
            route53.HostedZone.from_hosted_zone_attributes(
                self, "HostedZone", hosted_zone_id=hosted_zone.zone_id, zone_name=hosted_zone.zone_name
            )
            if hosted_zone is not None
            else None
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=MAX_AZS,
            nat_gateways=1,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="Public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="Private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22),
            ],
        )
        self.vpc.add_flow_log("FlowLog")

        self.web = StickyWebSocketLoadBalancer(
            self,
            "LoadBalancer",
            vpc=self.vpc,
            settings=settings,
            internet_facing=internet_facing,
            certificate_arn=certificate_arn,
            domain_name=domain_name,
            hosted_zone=zone,
            http_only=http_only,
        )
        self.registry = ConnectionRegistry(self, "Registry", vpc=self.vpc, settings=settings, existing_url=registry_url)
        self.app = WebSocketFargateService(
            self, "Service", vpc=self.vpc, settings=settings, redis_url=self.registry.url
        )
        self.web.attach(self.app.service)
        self.registry.allow_from(self.app.service)
        self.registry.connect_container(self.app.container)
        if settings.server.drain_poll_target_health:
            self.app.grant_describe_target_health(self.web.target_group)
        self.drain_notifier = DrainNotifier(
            self,
            "DrainNotifier",
            vpc=self.vpc,
            cluster=self.app.cluster,
            service=self.app.service,
            registry_url=self.registry.url,
        )
        self.registry.allow_from(self.drain_notifier.function)
        self.registry.connect_function(self.drain_notifier.function)
        if self.app.migration_hook is not None:
            self.registry.allow_from(self.app.migration_hook.function)
            self.registry.connect_function(self.app.migration_hook.function)
        assert self.web.load_balancer is not None  # this stack always creates its load balancer
        self.observability = WebSocketObservability(
            self,
            "Observability",
            settings=settings,
            load_balancer=self.web.load_balancer,
            target_group=self.web.target_group,
            service=self.app.service,
        )

        CfnOutput(self, Outputs.URL, value=self.web.url, description="HTTP(S) URL of the service")
        CfnOutput(self, Outputs.WEBSOCKET_URL, value=self.web.websocket_url, description="URL clients connect to")
        CfnOutput(self, Outputs.LOAD_BALANCER_ARN, value=self.web.load_balancer.load_balancer_arn)
        CfnOutput(self, Outputs.TARGET_GROUP_ARN, value=self.web.target_group.target_group_arn)
        if self.web.alternate_target_group is not None and self.web.test_websocket_url is not None:
            CfnOutput(self, Outputs.ALTERNATE_TARGET_GROUP_ARN, value=self.web.alternate_target_group.target_group_arn)
            CfnOutput(
                self,
                Outputs.TEST_WEBSOCKET_URL,
                value=self.web.test_websocket_url,
                description="Test lane: reaches the green revision during a blue/green, linear or canary deployment",
            )
        CfnOutput(self, Outputs.CLUSTER_NAME, value=self.app.cluster.cluster_name)
        CfnOutput(self, Outputs.SERVICE_NAME, value=self.app.service.service_name)
        CfnOutput(
            self,
            Outputs.REGISTRY_ENDPOINT,
            value=f"{self.registry.endpoint_address}:{self.registry.port}",
            description="Connection registry (Redis protocol) host:port",
        )
