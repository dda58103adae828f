"""A CDK app of a project that runs its OWN WebSocket server (Node, no Python in the image) behind stickyws's ALB.

Its own VPC, cluster, ALB and HTTPS listener; stickyws adds the sticky target group, the upgrade
rule and the Fargate service of ``public.ecr.aws/docker/library/node:20-slim`` with
``server_mode=own``: the server is told its port as ``PORT`` and nothing else, ECS probes
``/healthz`` with node itself, and the task count follows a metric this stack defines.

Run with the project's interpreter: ``python app.py OUTDIR`` writes ``OUTDIR/MyNodeWebSocketApp.template.json``.
"""

from __future__ import annotations

import sys

from aws_cdk import App, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from constructs import Construct

from constructs_lib import ContainerHealthCheck, ScalingSignal, StickyWebSocketLoadBalancer, WebSocketFargateService
from stickyws.settings import Settings

CERTIFICATE_ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
IMAGE = "public.ecr.aws/docker/library/node:20-slim"
#: The metric my server publishes (CloudWatch embedded metric format in its logs): open sockets per task.
OPEN_SOCKETS = cloudwatch.Metric(
    namespace="MyNodeApp",
    metric_name="OpenSocketsPerTask",
    statistic="Average",
)
#: node:20-slim has neither wget nor curl: the probe is node's own fetch.
HEALTH_PROBE = (
    "node -e \"fetch('http://127.0.0.1:3000/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))\""
)


class MyNodeWebSocketApp(Stack):
    """My VPC, cluster and HTTPS listener; stickyws adds the target group, the rule and my server's service."""

    def __init__(self, scope: Construct, id_: str) -> None:
        super().__init__(scope, id_)
        settings = Settings().with_overrides(
            {
                "server_mode": "own",
                "server_env": "port=PORT",
                "port": 3000,
                "health_check_path": "/healthz",
                "idle_timeout_s": 300,
                "deregistration_delay_s": 60,
            }
        )
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
            self, "WebSocket", vpc=vpc, settings=settings, load_balancer=alb, listener=listener,
            upgrade_rule_priority=10,
        )  # fmt: skip
        server = WebSocketFargateService(
            self,
            "Server",
            vpc=vpc,
            settings=settings,
            cluster=cluster,
            image=ecs.ContainerImage.from_registry(IMAGE),
            health_check=ContainerHealthCheck.command("CMD-SHELL", HEALTH_PROBE),
            scaling=[ScalingSignal.metric(OPEN_SOCKETS, 800, name="OpenSockets")],
        )
        web.attach(server)


if __name__ == "__main__":
    app = App(outdir=sys.argv[1])
    MyNodeWebSocketApp(app, "MyNodeWebSocketApp")
    app.synth()
