"""A CDK app of a project that installed stickyws: its own VPC, cluster, ALB and listener, plus the constructs.

Run with the project's interpreter: ``python app.py OUTDIR`` synthesizes ``OUTDIR/MyWebSocketApp.template.json``
and prints, as one JSON line, where Python found stickyws and constructs_lib (the packaging test checks that
it is the installed wheel).
"""

from __future__ import annotations

import importlib.metadata
import json
import sys

from aws_cdk import App, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from constructs import Construct

import constructs_lib
import stickyws
from constructs_lib import ConnectionRegistry, DrainNotifier, StickyWebSocketLoadBalancer, WebSocketFargateService
from stickyws.settings import Settings

CERTIFICATE_ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"


class MyWebSocketApp(Stack):
    """My VPC, cluster and HTTPS listener; stickyws adds target group, rule, service, registry, drain notifier."""

    def __init__(self, scope: Construct, id_: str) -> None:
        super().__init__(scope, id_)
        settings = Settings().with_overrides({"idle_timeout_s": 300, "deregistration_delay_s": 90})
        vpc = ec2.Vpc(self, "Vpc", max_azs=2, nat_gateways=1)
        cluster = ecs.Cluster(self, "Cluster", vpc=vpc)
        alb = elbv2.ApplicationLoadBalancer(self, "Alb", vpc=vpc, internet_facing=True)
        listener = alb.add_listener(
            "Https",
            port=443,
            certificates=[elbv2.ListenerCertificate.from_arn(CERTIFICATE_ARN)],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            default_action=elbv2.ListenerAction.fixed_response(404),
        )
        web = StickyWebSocketLoadBalancer(
            self,
            "WebSocket",
            vpc=vpc,
            settings=settings,
            load_balancer=alb,
            listener=listener,
            upgrade_rule_priority=10,
        )
        registry = ConnectionRegistry(self, "Registry", vpc=vpc)
        server = WebSocketFargateService(
            self, "Server", vpc=vpc, settings=settings, cluster=cluster, redis_url=registry.url
        )  # no image=: the default image of an installed stickyws
        web.attach(server.service)
        registry.allow_from(server.service)
        notifier = DrainNotifier(
            self, "DrainNotifier", vpc=vpc, cluster=cluster, service=server.service, registry_url=registry.url
        )
        registry.allow_from(notifier.function)


if __name__ == "__main__":
    # The packaging tests set CDK_VALIDATION=false: aws-cdk-lib's built-in CloudFormation validation costs
    # seconds per synth, and the oldest supported aws-cdk-lib has no App(builtin_cloud_formation_validation=).
    app = App(outdir=sys.argv[1])
    MyWebSocketApp(app, "MyWebSocketApp")
    app.synth()
    print(
        json.dumps(
            {
                "sys_path": sys.path,
                "stickyws": stickyws.__file__,
                "constructs_lib": constructs_lib.__file__,
                "distribution": str(importlib.metadata.distribution("stickyws").locate_file("")),
                "modules": sorted(sys.modules),
            }
        )
    )
