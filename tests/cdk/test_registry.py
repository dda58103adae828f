"""ConnectionRegistry: a Multi-AZ, encrypted Valkey replication group admitting only its peers; or an existing URL."""

from __future__ import annotations

from typing import Any

import pytest

from constructs_lib.registry import DEFAULT_PORT
from tests.cdk.test_service import VARIANT_REDIS_URL, drain_function, only, variant


def test_replication_group_settings(reference_template_json: dict[str, Any]) -> None:
    """Valkey 8.0 on cache.t4g.small, a primary and one replica, Multi-AZ failover, TLS required, encrypted at rest."""
    _, props = only(reference_template_json, "AWS::ElastiCache::ReplicationGroup")
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
