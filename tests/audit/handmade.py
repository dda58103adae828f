"""A small hand-written CloudFormation template shaped like the CDK reference stack's output.

It renders the same resources the auditor reads (ALB with attributes, HTTPS listener with a TLS 1.3
policy, HTTP redirect, `Upgrade: websocket` rule, target group, Fargate task definition with the
settings in its environment, ECS service, security groups) from a :class:`Settings` object. Tests
use it where the synthesized reference template is not needed, and as a second, independent shape
of template so the reader is not fitted to one synthesizer's output.
"""

from __future__ import annotations

from typing import Any

from stickyws.settings import Settings, server_environment, server_labels, to_env

CERTIFICATE_PARAMETER = "CertificateArn"
CONTAINER_NAME = "server"
NODE_IMAGE = "public.ecr.aws/docker/library/node:20-slim"


def _attrs(pairs: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


def _bool(value: bool) -> str:
    return "true" if value else "false"


def make_template(settings: Settings | None = None, *, https: bool = True, registry: bool = True) -> dict[str, Any]:
    """The template of one sticky WebSocket deployment rendered from ``settings`` (default: the model's).

    ``registry=False`` leaves out the ElastiCache registry.
    """
    s = settings or Settings()
    lb, tg, task = s.load_balancer, s.target_group, s.task
    port = s["port"]
    forward = [{"Type": "forward", "TargetGroupArn": {"Ref": "TargetGroup"}}]
    resources: dict[str, Any] = {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}},
        "SubnetA": {
            "Type": "AWS::EC2::Subnet",
            "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.0.0.0/24", "AvailabilityZone": "eu-west-1a"},
        },
        "SubnetB": {
            "Type": "AWS::EC2::Subnet",
            "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.0.1.0/24", "AvailabilityZone": "eu-west-1b"},
        },
        "LoadBalancerSecurityGroup": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": "load balancer",
                "VpcId": {"Ref": "Vpc"},
                "SecurityGroupIngress": [
                    {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "0.0.0.0/0"},
                    {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "CidrIp": "0.0.0.0/0"},
                ],
            },
        },
        "ServiceSecurityGroup": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {"GroupDescription": "tasks", "VpcId": {"Ref": "Vpc"}},
        },
        "ServiceSecurityGroupFromLoadBalancer": {
            "Type": "AWS::EC2::SecurityGroupIngress",
            "Properties": {
                "GroupId": {"Fn::GetAtt": ["ServiceSecurityGroup", "GroupId"]},
                "SourceSecurityGroupId": {"Fn::GetAtt": ["LoadBalancerSecurityGroup", "GroupId"]},
                "IpProtocol": "tcp",
                "FromPort": port,
                "ToPort": port,
            },
        },
        "LoadBalancer": {
            "Type": "AWS::ElasticLoadBalancingV2::LoadBalancer",
            "Properties": {
                "Type": "application",
                "Scheme": "internet-facing",
                "Subnets": [{"Ref": "SubnetA"}, {"Ref": "SubnetB"}],
                "SecurityGroups": [{"Fn::GetAtt": ["LoadBalancerSecurityGroup", "GroupId"]}],
                "LoadBalancerAttributes": _attrs(
                    {
                        "idle_timeout.timeout_seconds": str(lb.idle_timeout_s),
                        "routing.http2.enabled": _bool(lb.http2_enabled),
                        "client_keep_alive.seconds": str(lb.client_keep_alive_s),
                        "routing.http.drop_invalid_header_fields.enabled": _bool(lb.drop_invalid_header_fields),
                        "routing.http.desync_mitigation_mode": lb.desync_mitigation_mode,
                        "access_logs.s3.enabled": "true",
                        "access_logs.s3.bucket": "stickyws-access-logs",
                        "access_logs.s3.prefix": "alb",
                    }
                ),
            },
        },
        "TargetGroup": {
            "Type": "AWS::ElasticLoadBalancingV2::TargetGroup",
            "Properties": {
                "Protocol": "HTTP",
                "ProtocolVersion": "HTTP1",
                "Port": port,
                "TargetType": "ip",
                "VpcId": {"Ref": "Vpc"},
                "HealthCheckPath": tg.health_check_path,
                "HealthCheckIntervalSeconds": tg.health_check_interval_s,
                "HealthCheckTimeoutSeconds": tg.health_check_timeout_s,
                "HealthyThresholdCount": tg.healthy_threshold_count,
                "UnhealthyThresholdCount": tg.unhealthy_threshold_count,
                "Matcher": {"HttpCode": tg.health_check_matcher},
                "TargetGroupAttributes": _attrs(
                    {
                        "deregistration_delay.timeout_seconds": str(tg.deregistration_delay_s),
                        "stickiness.enabled": _bool(tg.stickiness_enabled),
                        "stickiness.type": tg.stickiness_type,
                        "stickiness.lb_cookie.duration_seconds": str(tg.stickiness_duration_s),
                    }
                ),
            },
        },
        "UpgradeRule": {
            "Type": "AWS::ElasticLoadBalancingV2::ListenerRule",
            "Properties": {
                "ListenerArn": {"Ref": "HttpsListener" if https else "HttpListener"},
                "Priority": 1,
                "Conditions": [
                    {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "Upgrade", "Values": ["websocket"]}}
                ],
                "Actions": forward,
            },
        },
        "Cluster": {"Type": "AWS::ECS::Cluster", "Properties": {}},
        "TaskDefinition": {
            "Type": "AWS::ECS::TaskDefinition",
            "Properties": {
                "Family": "stickyws",
                "Cpu": str(task.task_cpu),
                "Memory": str(task.task_memory_mib),
                "NetworkMode": "awsvpc",
                "RequiresCompatibilities": ["FARGATE"],
                "ContainerDefinitions": [
                    {
                        "Name": CONTAINER_NAME,
                        "Image": "public.ecr.aws/docker/library/python:3.11-slim",
                        "Essential": True,
                        "StopTimeout": task.stop_timeout_s,
                        "PortMappings": [{"ContainerPort": port, "Protocol": "tcp"}],
                        "Environment": [{"Name": k, "Value": v} for k, v in to_env(s).items()],
                    }
                ],
            },
        },
        "Service": {
            "Type": "AWS::ECS::Service",
            "DependsOn": ["UpgradeRule"],
            "Properties": {
                "Cluster": {"Ref": "Cluster"},
                "TaskDefinition": {"Ref": "TaskDefinition"},
                "DesiredCount": task.desired_count,
                "LaunchType": "FARGATE",
                "HealthCheckGracePeriodSeconds": task.health_check_grace_s,
                "DeploymentConfiguration": {
                    "MinimumHealthyPercent": task.min_healthy_percent,
                    "MaximumPercent": task.max_percent,
                    "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
                },
                "LoadBalancers": [
                    {"TargetGroupArn": {"Ref": "TargetGroup"}, "ContainerName": CONTAINER_NAME, "ContainerPort": port}
                ],
                "NetworkConfiguration": {
                    "AwsvpcConfiguration": {
                        "AssignPublicIp": "DISABLED",
                        "Subnets": [{"Ref": "SubnetA"}, {"Ref": "SubnetB"}],
                        "SecurityGroups": [{"Fn::GetAtt": ["ServiceSecurityGroup", "GroupId"]}],
                    }
                },
            },
        },
    }
    if https:
        resources["HttpsListener"] = {
            "Type": "AWS::ElasticLoadBalancingV2::Listener",
            "Properties": {
                "LoadBalancerArn": {"Ref": "LoadBalancer"},
                "Protocol": "HTTPS",
                "Port": 443,
                "SslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
                "Certificates": [{"CertificateArn": {"Ref": CERTIFICATE_PARAMETER}}],
                "DefaultActions": forward,
            },
        }
        http_default: list[dict[str, Any]] = [
            {"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}
        ]
    else:
        http_default = forward
    resources["HttpListener"] = {
        "Type": "AWS::ElasticLoadBalancingV2::Listener",
        "Properties": {
            "LoadBalancerArn": {"Ref": "LoadBalancer"},
            "Protocol": "HTTP",
            "Port": 80,
            "DefaultActions": http_default,
        },
    }
    if registry:
        resources.update(registry_resources(s))
    template: dict[str, Any] = {"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources}
    if https:
        template["Parameters"] = {CERTIFICATE_PARAMETER: {"Type": "String"}}
    return template


def make_own_server_template(settings: Settings, *, stray: dict[str, str] | None = None) -> dict[str, Any]:
    """The template of a Node image (``server_mode=own``) behind the same load balancer, with no registry.

    The server container carries :func:`server_labels` as Docker labels and :func:`server_environment`
    (the settings it is told, under its own variable names), plus ``NODE_ENV`` and ``stray`` variables
    (e.g. ``STICKYWS_*`` leftovers that the Node server never reads).
    """
    assert settings.own_server, "make_own_server_template renders server_mode=own settings"
    template = make_template(settings, registry=False)
    (container,) = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    env = {**server_environment(settings), "NODE_ENV": "production", **(stray or {})}
    container.update(
        Image=NODE_IMAGE,
        Command=["node", "server.js"],
        Environment=[{"Name": k, "Value": v} for k, v in env.items()],
        DockerLabels=server_labels(settings),
    )
    return template


def registry_resources(s: Settings) -> dict[str, Any]:
    """The connection registry of ``s`` (node-based modes): a TLS-only, Multi-AZ replication group whose RBAC user
    group holds a disabled default user and an IAM (or password) application user."""
    r = s.registry
    cluster = r.registry_mode == "cluster"
    topology: dict[str, Any] = (
        {
            "NumNodeGroups": r.registry_shards,
            "ReplicasPerNodeGroup": r.registry_replicas_per_shard,
            "ClusterMode": "enabled",
        }
        if cluster
        else {"NumCacheClusters": r.registry_replicas_per_shard + 1}
    )
    auth = {"Type": "iam"} if r.registry_auth == "iam" else {"Type": "password", "Passwords": ["p" * 32]}
    cache: dict[str, Any] = {
        "Type": "AWS::ElastiCache::ReplicationGroup",
        "Properties": {
            "ReplicationGroupDescription": "registry",
            "Engine": r.registry_engine,
            "EngineVersion": r.registry_engine_version or "8.0",
            "CacheNodeType": r.registry_node_type,
            "AutomaticFailoverEnabled": True,
            "MultiAZEnabled": True,
            "TransitEncryptionEnabled": True,
            "TransitEncryptionMode": "required",
            "AtRestEncryptionEnabled": True,
            "UserGroupIds": ["reg-users"],
            **topology,
        },
    }
    if r.registry_mode == "serverless":
        cache = {
            "Type": "AWS::ElastiCache::ServerlessCache",
            "Properties": {
                "ServerlessCacheName": "reg-cache",
                "Engine": r.registry_engine,
                "MajorEngineVersion": (r.registry_engine_version or "8.0").split(".")[0],
                "UserGroupId": "reg-users",
            },
        }
    return {
        "RegistryDefaultUser": {
            "Type": "AWS::ElastiCache::User",
            "Properties": {"Engine": r.registry_engine, "UserId": "reg-off", "UserName": "default",
                           "AccessString": "off -@all", "NoPasswordRequired": True},
        },
        "RegistryAppUser": {
            "Type": "AWS::ElastiCache::User",
            "Properties": {"Engine": r.registry_engine, "UserId": "reg-app", "UserName": "reg-app",
                           "AccessString": "on ~* &* +@all", "AuthenticationMode": auth},
        },
        "RegistryUserGroup": {
            "Type": "AWS::ElastiCache::UserGroup",
            "Properties": {"Engine": r.registry_engine, "UserGroupId": "reg-users", "UserIds": ["reg-off", "reg-app"]},
        },
        "Registry": cache,
    }  # fmt: skip
