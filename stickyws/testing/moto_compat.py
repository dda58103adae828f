"""Deploy a CloudFormation template into moto, and re-apply what moto's CloudFormation drops.

moto 5.2's CloudFormation creates the resources but silently ignores some of their properties
(load balancer and target group attributes, the Fargate fields of task definitions, a service's
load balancers, network and deployment configuration, and with them a blue/green, linear or canary
service's strategy, bake times, lifecycle hooks and alternate target group); a test that only deploys would then audit
moto's defaults, not the template. Each gap is listed in :data:`GAPS` and closed here with
PUBLIC API calls only (the same calls a user could make), never by touching moto's internals.
This project's test suite holds one strict-xfail canary per gap (``tests/moto/test_moto_gaps.py``):
the day moto applies a property natively, its canary passes, the strict xfail turns the run red,
and the matching workaround here should be deleted.

The workarounds read the properties from the template itself, so a mutated template (HTTP/2 on,
a 5 s deregistration delay, ...) reaches moto mutated.

Deploying (:func:`deploy`) also prepares what ``cdk deploy`` would have: the CDK bootstrap version
parameter, the Lambda code objects in the asset bucket (stubs), an ACM certificate for HTTPS
listeners; and it leaves out the resources moto cannot create at all (:func:`moto_deployable`,
:data:`UNDEPLOYABLE_TYPES`), none of which the auditor reads.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stickyws.errors import StackTestingError

#: SSM parameter every CDK template checks (``BootstrapVersion``); moto's create_stack fails without it.
BOOTSTRAP_VERSION_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
#: A bootstrap version above what current CDK templates require (they check >= 6).
BOOTSTRAP_VERSION = "30"

LB_TYPE = "AWS::ElasticLoadBalancingV2::LoadBalancer"
LISTENER_TYPE = "AWS::ElasticLoadBalancingV2::Listener"
TG_TYPE = "AWS::ElasticLoadBalancingV2::TargetGroup"
SERVICE_TYPE = "AWS::ECS::Service"
TASK_TYPE = "AWS::ECS::TaskDefinition"


@dataclass(frozen=True)
class Gap:
    """A property moto's CloudFormation drops, and the public call that applies it instead."""

    id: str
    dropped: str
    workaround: str


GAPS: dict[str, Gap] = {
    g.id: g
    for g in (
        Gap(
            "load-balancer-attributes",
            "AWS::ElasticLoadBalancingV2::LoadBalancer LoadBalancerAttributes",
            "elbv2.modify_load_balancer_attributes",
        ),
        Gap(
            "target-group-attributes",
            "AWS::ElasticLoadBalancingV2::TargetGroup TargetGroupAttributes",
            "elbv2.modify_target_group_attributes",
        ),
        Gap(
            "task-definition-fargate",
            "AWS::ECS::TaskDefinition Cpu, NetworkMode, RequiresCompatibilities",
            "ecs.register_task_definition (new revision) + ecs.update_service(taskDefinition=...)",
        ),
        Gap(
            "service-load-balancers",
            "AWS::ECS::Service LoadBalancers",
            "ecs.update_service(loadBalancers=...)",
        ),
        Gap(
            "service-network-configuration",
            "AWS::ECS::Service NetworkConfiguration",
            "ecs.update_service(networkConfiguration=...)",
        ),
        Gap(
            "service-deployment-configuration",
            "AWS::ECS::Service DeploymentConfiguration and HealthCheckGracePeriodSeconds",
            "ecs.update_service(deploymentConfiguration=..., healthCheckGracePeriodSeconds=...)",
        ),
        Gap(
            "service-deployment-strategy",
            "AWS::ECS::Service DeploymentConfiguration Strategy, BakeTimeInMinutes, LinearConfiguration, "
            "CanaryConfiguration and LifecycleHooks",
            "ecs.update_service(deploymentConfiguration={strategy, bakeTimeInMinutes, ...})",
        ),
        Gap(
            "service-advanced-configuration",
            "AWS::ECS::Service LoadBalancers[].AdvancedConfiguration (alternate target group, production and "
            "test listener rules, role)",
            "ecs.update_service(loadBalancers=[{..., advancedConfiguration}])",
        ),
    )
}


#: Resources moto 5.2.5's CloudFormation cannot create, with the reason; none is read by the auditor,
#: and :func:`moto_deployable` removes them (custom resources too: moto would run their Lambda in Docker).
UNDEPLOYABLE_TYPES: dict[str, str] = {
    "AWS::ElastiCache::ReplicationGroup": "no moto CloudFormation model; GetAtt PrimaryEndPoint.Address breaks",
    "AWS::ElastiCache::SubnetGroup": "no moto CloudFormation model",
    "AWS::SecretsManager::Secret": "no moto CloudFormation model; Ref to it leaves IAM policies without Resource",
    "AWS::CloudWatch::Alarm": "GetAtt TargetGroup.TargetGroupFullName: moto's FakeTargetGroup has no get_cfn_attribute",
    "AWS::CloudWatch::Dashboard": "same GetAtt TargetGroupFullName as the alarms",
}
UNDEPLOYABLE_PREFIXES = ("Custom::", "AWS::CloudFormation::CustomResource")
#: Resource types the auditor reads: :func:`moto_deployable` must never remove one of these.
AUDITED_TYPES = frozenset(
    {
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "AWS::ElasticLoadBalancingV2::Listener",
        "AWS::ElasticLoadBalancingV2::ListenerRule",
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        "AWS::ECS::Service",
        "AWS::ECS::TaskDefinition",
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::SecurityGroupIngress",
    }
)


def moto_deployable(template: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``template`` without the resources moto cannot create; returns it and their logical ids.

    Every ``Ref``/``Fn::GetAtt`` to a removed resource becomes the literal :data:`REMOVED_PREFIX` +
    ``<id>[/<attr>]`` (an ARN-shaped text, so IAM policies naming it stay valid)
    (for instance inside the ``Fn::Join`` of the container's ``REDIS_URL``), ``DependsOn`` entries on
    them are dropped. The resources the auditor reads (:data:`AUDITED_TYPES`) are never removed.
    """
    result = copy.deepcopy(dict(template))
    resources = result["Resources"]
    removed = [
        logical
        for logical, r in resources.items()
        if r.get("Type") in UNDEPLOYABLE_TYPES or str(r.get("Type", "")).startswith(UNDEPLOYABLE_PREFIXES)
    ]
    audited = [r for r in removed if resources[r]["Type"] in AUDITED_TYPES]
    if audited:
        raise UnresolvableError(f"resources the auditor reads would be left out: {', '.join(audited)}")
    for logical in removed:
        del resources[logical]
    gone = set(removed)

    def scrub(value: Any) -> Any:
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, dict):
            if len(value) == 1:
                (fn, arg), *_ = value.items()
                if fn == "Ref" and arg in gone:
                    return f"{REMOVED_PREFIX}{arg}"
                if fn == "Fn::GetAtt":
                    logical, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
                    if logical in gone:
                        return f"{REMOVED_PREFIX}{logical}/{attribute}"
            return {k: scrub(v) for k, v in value.items()}
        return value

    for resource in resources.values():
        depends = resource.get("DependsOn")
        if isinstance(depends, str) and depends in gone:
            del resource["DependsOn"]
        elif isinstance(depends, list):
            resource["DependsOn"] = [d for d in depends if d not in gone]
    result["Resources"] = scrub(resources)
    if "Outputs" in result:
        result["Outputs"] = scrub(result["Outputs"])
    return result, removed


#: What a reference to a removed resource becomes (IAM policy validation wants an ``arn:aws:`` shape).
REMOVED_PREFIX = "arn:aws:removed:::"


class UnresolvableError(StackTestingError, ValueError):
    """A template value that cannot be turned into a physical value after deployment."""


def prepare_account(session: Any) -> None:
    """Put the CDK bootstrap version parameter that every CDK template's rule reads."""
    session.client("ssm").put_parameter(
        Name=BOOTSTRAP_VERSION_PARAMETER, Value=BOOTSTRAP_VERSION, Type="String", Overwrite=True
    )


def stage_lambda_code(session: Any, template: Mapping[str, Any]) -> None:
    """Create the CDK asset bucket and a stub zip for every Lambda whose code the template puts in S3.

    moto's CloudFormation fetches each function's code object while creating the stack; the real
    assets are published by ``cdk deploy``, which a moto deployment does not run. The stub is never invoked.
    """
    import io
    import zipfile

    s3 = session.client("s3")
    account = session.client("sts").get_caller_identity()["Account"]
    region = session.region_name
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return None\n")
    for _, props in _of_type(template, "AWS::Lambda::Function"):
        code = props.get("Code") or {}
        if "S3Key" not in code:
            continue
        bucket = code["S3Bucket"]
        if isinstance(bucket, Mapping) and "Fn::Sub" in bucket:
            bucket = bucket["Fn::Sub"].replace("${AWS::AccountId}", account).replace("${AWS::Region}", region)
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            if region == "us-east-1":
                s3.create_bucket(Bucket=bucket)
            else:
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
        s3.put_object(Bucket=bucket, Key=code["S3Key"], Body=buffer.getvalue())


def request_certificate(session: Any, domain: str = "ws.example.com") -> str:
    """An ACM certificate in the mock for the HTTPS listener (moto checks that it exists)."""
    arn: str = session.client("acm").request_certificate(DomainName=domain)["CertificateArn"]
    return arn


def with_certificate(template: Mapping[str, Any], certificate_arn: str) -> dict[str, Any]:
    """A copy of ``template`` whose HTTPS listeners use ``certificate_arn`` (created in the mock)."""
    result = copy.deepcopy(dict(template))
    for resource in result["Resources"].values():
        if resource.get("Type") == LISTENER_TYPE and resource["Properties"].get("Certificates"):
            resource["Properties"]["Certificates"] = [{"CertificateArn": certificate_arn}]
    return result


def has_https_listener(template: Mapping[str, Any]) -> bool:
    """Whether the template has an HTTPS listener (which needs a certificate in the mock)."""
    return any(
        r.get("Type") == LISTENER_TYPE and r.get("Properties", {}).get("Protocol") == "HTTPS"
        for r in template["Resources"].values()
    )


def create_stack(session: Any, template: Mapping[str, Any], stack_name: str) -> dict[str, str]:
    """Create ``stack_name`` in moto's CloudFormation (no workaround); returns ``{logical id: physical id}``.

    The template's HTTPS listeners get a fresh ACM certificate from the mock.
    """
    prepare_account(session)
    stage_lambda_code(session, template)
    body, _ = moto_deployable(template)
    if has_https_listener(body):
        body = with_certificate(body, request_certificate(session))
    cfn = session.client("cloudformation")
    with warnings.catch_warnings():
        # moto skips the resource types it has no model for (queue policies, ...); none is audited.
        warnings.filterwarnings("ignore", "Tried to parse AWS::", UserWarning)
        cfn.create_stack(StackName=stack_name, TemplateBody=json.dumps(body), Capabilities=["CAPABILITY_IAM"])
    status = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
    if status != "CREATE_COMPLETE":
        raise RuntimeError(f"moto left stack {stack_name} in {status}")
    physical: dict[str, str] = {}
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name):
        for r in page["StackResourceSummaries"]:
            if r.get("PhysicalResourceId"):
                physical[r["LogicalResourceId"]] = r["PhysicalResourceId"]
    return physical


def deploy(session: Any, template: Mapping[str, Any], stack_name: str) -> dict[str, str]:
    """Create the stack, then apply every dropped property (:func:`apply_dropped_properties`)."""
    physical = create_stack(session, template, stack_name)
    apply_dropped_properties(session, template, physical)
    return physical


def resolve(value: Any, physical: Mapping[str, str]) -> Any:
    """A template value with ``Ref``/``Fn::GetAtt`` to deployed resources replaced by physical values.

    ``GetAtt X.GroupId`` of a security group is its physical id in moto as in AWS. Raises
    :class:`UnresolvableError` for any other intrinsic function.
    """
    if isinstance(value, list):
        return [resolve(v, physical) for v in value]
    if isinstance(value, Mapping):
        if len(value) == 1:
            (fn, arg), *_ = value.items()
            if fn == "Ref" and arg in physical:
                return physical[arg]
            if fn == "Fn::GetAtt":
                logical, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
                if attribute in ("GroupId", "Arn", "LoadBalancerArn", "TargetGroupArn") and logical in physical:
                    return physical[logical]
            if fn.startswith("Fn::") or fn == "Ref":
                raise UnresolvableError(json.dumps(value)[:120])
        return {k: resolve(v, physical) for k, v in value.items()}
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _of_type(template: Mapping[str, Any], kind: str) -> list[tuple[str, Mapping[str, Any]]]:
    return [
        (logical, r.get("Properties") or {}) for logical, r in template["Resources"].items() if r.get("Type") == kind
    ]


def _attributes(entries: Any, physical: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": e["Key"], "Value": str(resolve(e["Value"], physical))} for e in entries or []]


def apply_dropped_properties(session: Any, template: Mapping[str, Any], physical: Mapping[str, str]) -> list[str]:
    """Apply every property of :data:`GAPS` from ``template`` to the deployed stack; returns the gap ids used."""
    elbv2, ecs = session.client("elbv2"), session.client("ecs")
    applied: list[str] = []
    for logical, props in _of_type(template, LB_TYPE):
        if props.get("LoadBalancerAttributes"):
            elbv2.modify_load_balancer_attributes(
                LoadBalancerArn=physical[logical], Attributes=_attributes(props["LoadBalancerAttributes"], physical)
            )
            applied.append("load-balancer-attributes")
    for logical, props in _of_type(template, TG_TYPE):
        if props.get("TargetGroupAttributes"):
            elbv2.modify_target_group_attributes(
                TargetGroupArn=physical[logical], Attributes=_attributes(props["TargetGroupAttributes"], physical)
            )
            applied.append("target-group-attributes")
    tasks = dict(_of_type(template, TASK_TYPE))
    arn_of = _arn_resolver(session, physical)
    for logical, props in _of_type(template, SERVICE_TYPE):
        cluster = resolve(props.get("Cluster", "default"), physical)
        update: dict[str, Any] = {"cluster": cluster, "service": physical[logical]}
        task_ref = props.get("TaskDefinition", {}).get("Ref")
        if task_ref in tasks:
            update["taskDefinition"] = _register_fargate_revision(ecs, tasks[task_ref], physical[task_ref])
            applied.append("task-definition-fargate")
        if props.get("LoadBalancers"):
            update["loadBalancers"] = [_load_balancer(m, physical, arn_of) for m in props["LoadBalancers"]]
            applied.append("service-load-balancers")
            if any(m.get("AdvancedConfiguration") for m in props["LoadBalancers"]):
                applied.append("service-advanced-configuration")
        network = (props.get("NetworkConfiguration") or {}).get("AwsvpcConfiguration")
        if network:
            update["networkConfiguration"] = {
                "awsvpcConfiguration": {
                    "subnets": resolve(network.get("Subnets", []), physical),
                    "securityGroups": resolve(network.get("SecurityGroups", []), physical),
                    "assignPublicIp": network.get("AssignPublicIp", "DISABLED"),
                }
            }
            applied.append("service-network-configuration")
        deployment = props.get("DeploymentConfiguration")
        if deployment or props.get("HealthCheckGracePeriodSeconds") is not None:
            update["deploymentConfiguration"] = _deployment_configuration(deployment or {}, arn_of)
            if props.get("HealthCheckGracePeriodSeconds") is not None:
                update["healthCheckGracePeriodSeconds"] = int(props["HealthCheckGracePeriodSeconds"])
            applied.append("service-deployment-configuration")
            if (deployment or {}).get("Strategy"):
                applied.append("service-deployment-strategy")
        ecs.update_service(**update)
    return applied


def _load_balancer(props: Mapping[str, Any], physical: Mapping[str, str], arn_of: ArnOf) -> dict[str, Any]:
    """One entry of ``update_service(loadBalancers=...)``, with the blue/green ``advancedConfiguration``."""
    entry: dict[str, Any] = {
        "targetGroupArn": resolve(props["TargetGroupArn"], physical),
        "containerName": props["ContainerName"],
        "containerPort": int(props["ContainerPort"]),
    }
    advanced = props.get("AdvancedConfiguration")
    if advanced:
        names = {
            "AlternateTargetGroupArn": "alternateTargetGroupArn",
            "ProductionListenerRule": "productionListenerRule",
            "TestListenerRule": "testListenerRule",
            "RoleArn": "roleArn",
        }
        entry["advancedConfiguration"] = {
            key: arn_of(advanced[prop]) for prop, key in names.items() if advanced.get(prop) is not None
        }
    return entry


ArnOf = Callable[[Any], str]


def _arn_resolver(session: Any, physical: Mapping[str, str]) -> ArnOf:
    """Resolve a template value to an ARN: a ``GetAtt X.Arn`` of an IAM role or a Lambda function resolves to
    their physical id, which is their name; their ARN is then read from the mock."""
    from botocore.exceptions import ClientError

    def role_arn(name: str) -> str:
        return str(session.client("iam").get_role(RoleName=name)["Role"]["Arn"])

    def function_arn(name: str) -> str:
        return str(session.client("lambda").get_function(FunctionName=name)["Configuration"]["FunctionArn"])

    def arn_of(value: Any) -> str:
        resolved = str(resolve(value, physical))
        if resolved.startswith("arn:"):
            return resolved
        for lookup in (role_arn, function_arn):
            try:
                return lookup(resolved)
            except ClientError:  # not this kind of resource: try the next
                continue
        raise UnresolvableError(f"{resolved} is neither an IAM role nor a Lambda function of the stack")

    return arn_of


def _deployment_configuration(props: Mapping[str, Any], arn_of: ArnOf) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if props.get("Strategy"):
        config["strategy"] = str(props["Strategy"])
    if props.get("BakeTimeInMinutes") is not None:
        config["bakeTimeInMinutes"] = int(props["BakeTimeInMinutes"])
    linear = props.get("LinearConfiguration")
    if linear:
        config["linearConfiguration"] = {
            "stepPercent": float(linear["StepPercent"]),
            "stepBakeTimeInMinutes": int(linear["StepBakeTimeInMinutes"]),
        }
    canary = props.get("CanaryConfiguration")
    if canary:
        config["canaryConfiguration"] = {
            "canaryPercent": float(canary["CanaryPercent"]),
            "canaryBakeTimeInMinutes": int(canary["CanaryBakeTimeInMinutes"]),
        }
    hooks = props.get("LifecycleHooks")
    if hooks:
        config["lifecycleHooks"] = [
            {
                "hookTargetArn": arn_of(h["HookTargetArn"]),
                "roleArn": arn_of(h["RoleArn"]),
                "lifecycleStages": list(h["LifecycleStages"]),
            }
            for h in hooks
        ]
    if "MinimumHealthyPercent" in props:
        config["minimumHealthyPercent"] = int(props["MinimumHealthyPercent"])
    if "MaximumPercent" in props:
        config["maximumPercent"] = int(props["MaximumPercent"])
    breaker = props.get("DeploymentCircuitBreaker")
    if breaker:
        config["deploymentCircuitBreaker"] = {
            "enable": str(breaker.get("Enable")).lower() == "true",
            "rollback": str(breaker.get("Rollback")).lower() == "true",
        }
    return config


def _register_fargate_revision(ecs: Any, props: Mapping[str, Any], deployed_arn: str) -> str:
    """A new revision of the deployed task definition with the Fargate fields moto dropped."""
    deployed = ecs.describe_task_definition(taskDefinition=deployed_arn)["taskDefinition"]
    kwargs: dict[str, Any] = {"family": deployed["family"], "containerDefinitions": deployed["containerDefinitions"]}
    for prop, key in (("Cpu", "cpu"), ("Memory", "memory"), ("NetworkMode", "networkMode")):
        if props.get(prop) is not None:
            kwargs[key] = str(props[prop])
    if props.get("RequiresCompatibilities"):
        kwargs["requiresCompatibilities"] = list(props["RequiresCompatibilities"])
    arn: str = ecs.register_task_definition(**kwargs)["taskDefinition"]["taskDefinitionArn"]
    return arn
