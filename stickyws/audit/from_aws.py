"""Read a live deployment through boto3 into a :class:`DeploymentView` (read-only API calls).

Three entry points, all ending in the same reader:

- :func:`read_stack`: a CloudFormation stack; its resources name the load balancer, the ECS
  service and cluster (``cloudformation:ListStackResources``).
- :func:`read_load_balancer`: ANY Application Load Balancer by ARN, with an optional target
  group ARN; without one, the target group is the one the ``Upgrade: websocket`` rule forwards
  to. The ECS service is found by scanning the account's services for one registered with the
  target group (bounded, see :data:`MAX_SCAN_CALLS`).
- :func:`read_target_group`: a target group by ARN; its load balancer is looked up.

Region, profile, endpoint (``AWS_ENDPOINT_URL``) and credentials are resolved the way boto3
always does; ``region``/``profile`` override the environment. Every failure to read is raised
as :class:`ReadError` with a one-line reason (``stickyws audit`` exits 2); nothing else escapes.

IAM permissions used (all read-only): ``cloudformation:ListStackResources``,
``elasticloadbalancing:DescribeLoadBalancers``, ``DescribeLoadBalancerAttributes``,
``DescribeListeners``, ``DescribeRules``, ``DescribeTargetGroups``,
``DescribeTargetGroupAttributes``, ``DescribeTargetHealth`` (best effort: without it the targets are
not counted and a note says so), ``ecs:ListClusters``, ``ecs:ListServices``,
``ecs:DescribeServices``, ``ecs:DescribeTaskDefinition`` (the server container's environment and its
``stickyws.*`` Docker labels), ``ec2:DescribeSecurityGroups``, and for
the connection registry ``elasticache:DescribeReplicationGroups``, ``DescribeServerlessCaches``,
``DescribeUserGroups`` and ``DescribeUsers``.

The registry (the stack's ElastiCache replication group or Serverless cache, or the one named by
``registry_id``) is read on a best-effort basis: a failure to read it becomes a note of the view
and the registry check warns, since the load balancer audit stands without it.

The module stays whole: one reader's steps, per AWS service, share its client cache, its notes and
the one translation of botocore's errors into :class:`ReadError`, so a split by service would only
scatter them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
)

from stickyws.audit.view import (
    ENV_PREFIX,
    LABEL_PREFIX,
    Action,
    Container,
    DeploymentView,
    HealthCheck,
    IngressPermission,
    Listener,
    ListenerRule,
    LoadBalancer,
    Registry,
    RuleCondition,
    SecurityGroup,
    Service,
    ShiftTarget,
    TargetGroup,
    TaskDefinition,
    keeps_variable,
    load_balancer_origin,
    websocket_target_group,
)
from stickyws.errors import AuditError
from stickyws.settings import ENV_REDIS_URL

#: Upper bound on ECS list/describe calls when searching the account for the service of a target group.
MAX_SCAN_CALLS = 200

_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess"}
_BAD_CREDENTIALS = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "AuthFailure",
}


_NOT_FOUND = ("NotFound", "NotFoundException", "ValidationError")


class ReadError(AuditError):
    """The deployment could not be read; the message is one line that says what to do."""


@contextlib.contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Turn botocore's errors raised while doing ``what`` into :class:`ReadError`."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "?")), str(error.get("Message", "")).strip()
        operation = getattr(exc, "operation_name", "?")
        if code in _DENIED:
            raise ReadError(f"no permission to {what} ({operation}): {message}; see docs/audit.md for IAM") from None
        if code in _BAD_CREDENTIALS:
            raise ReadError(f"AWS rejected the credentials while trying to {what}: {code}: {message}") from None
        hint = "; check the name or ARN and the region" if code.endswith(_NOT_FOUND) else ""
        raise ReadError(f"cannot {what}: {code}: {message}{hint}") from None
    except NoCredentialsError:
        raise ReadError(
            f"cannot {what}: no AWS credentials found; set AWS_PROFILE (or --profile) or AWS_ACCESS_KEY_ID"
        ) from None
    except PartialCredentialsError as exc:
        raise ReadError(f"cannot {what}: incomplete AWS credentials ({exc})") from None
    except NoRegionError:
        raise ReadError(f"cannot {what}: no AWS region; pass --region or set AWS_REGION") from None
    except EndpointConnectionError as exc:
        raise ReadError(f"cannot {what}: cannot reach {exc.kwargs.get('endpoint_url', 'the endpoint')}") from None
    except ParamValidationError as exc:
        raise ReadError(f"cannot {what}: invalid parameter: {' '.join(str(exc).split())}") from None
    except BotoCoreError as exc:
        raise ReadError(f"cannot {what}: {' '.join(str(exc).split())}") from None


def make_session(region: str | None = None, profile: str | None = None) -> Any:
    """A boto3 session from the usual chain, with ``region``/``profile`` overriding the environment."""
    with aws_errors(f"use profile {profile!r}"):
        try:
            return boto3.Session(profile_name=profile, region_name=region)
        except ProfileNotFound:
            raise ReadError(f"AWS profile {profile!r} not found; check --profile or AWS_PROFILE") from None


def read_stack(session: Any, stack_name: str) -> DeploymentView:
    """The deployment of CloudFormation stack ``stack_name``.

    A stack whose ``StickyWebSocketLoadBalancer`` was given an existing load balancer or listener holds
    no load balancer of its own: its target group's load balancer is read then.
    """
    reader = _Reader(session)
    resources = reader.stack_resources(stack_name)
    albs = [physical for _, physical in resources.get("AWS::ElasticLoadBalancingV2::LoadBalancer", [])]
    groups = [physical for _, physical in resources.get("AWS::ElasticLoadBalancingV2::TargetGroup", [])]
    if not albs and groups:
        described = reader.describe_target_group(groups[0])
        albs = list(described.get("LoadBalancerArns") or [])[:1]
    if not albs:
        raise ReadError(f"stack {stack_name} has no load balancer (AWS::ElasticLoadBalancingV2::LoadBalancer)")
    if len(albs) > 1:
        reader.notes.append(f"stack {stack_name} has {len(albs)} load balancers; auditing {albs[0]}")
    clusters = [physical for _, physical in resources.get("AWS::ECS::Cluster", [])]
    services = [physical for _, physical in resources.get("AWS::ECS::Service", [])]
    view = reader.deployment(f"stack {stack_name}", albs[0], None, services, clusters[0] if clusters else None)
    logical = {physical: logical for entries in resources.values() for logical, physical in entries}
    rules = [(i, None) for i, _ in resources.get("AWS::ElasticLoadBalancingV2::ListenerRule", [])]
    origin = load_balancer_origin((logical.get(albs[0], ""), None), rules)
    if view.load_balancer is not None:
        view = dataclasses.replace(view, load_balancer=dataclasses.replace(view.load_balancer, origin=origin))
    caches = resources.get("AWS::ElastiCache::ReplicationGroup", [])
    serverless = resources.get("AWS::ElastiCache::ServerlessCache", [])
    registry_id = (caches or serverless)[0][1] if caches or serverless else None
    return _with_registry(reader, view, registry_id, serverless=not caches)


def read_load_balancer(
    session: Any, load_balancer_arn: str, target_group_arn: str | None = None, registry_id: str | None = None
) -> DeploymentView:
    """The deployment behind load balancer ``load_balancer_arn`` (target group: given, or the WebSocket one);
    ``registry_id`` names the registry's replication group or Serverless cache."""
    reader = _Reader(session)
    view = reader.deployment(f"load balancer {load_balancer_arn}", load_balancer_arn, target_group_arn)
    return _with_registry(reader, view, registry_id)


def read_registry(
    session: Any, registry_id: str, *, serverless: bool | None = None
) -> tuple[Registry | None, list[str]]:
    """The registry ``registry_id`` (a replication group id, else a Serverless cache name) and notes on what
    could not be read; ``serverless`` skips the guess."""
    reader = _Reader(session)
    return reader.registry(registry_id, serverless), reader.notes


def _with_registry(reader: _Reader, view: DeploymentView, registry_id: str | None, *, serverless: bool | None = None
                   ) -> DeploymentView:  # fmt: skip
    if registry_id is None:
        return dataclasses.replace(
            view, notes=(*view.notes, "no ElastiCache registry named or in the stack (not read)")
        )
    registry = reader.registry(registry_id, serverless)
    return dataclasses.replace(view, registry=registry, notes=tuple(reader.notes), registry_declared=True)


def read_target_group(session: Any, target_group_arn: str, registry_id: str | None = None) -> DeploymentView:
    """The deployment around target group ``target_group_arn`` and the first load balancer it serves (and the
    registry ``registry_id``)."""
    reader = _Reader(session)
    group = reader.describe_target_group(target_group_arn)
    arns = group.get("LoadBalancerArns") or []
    if not arns:
        raise ReadError(f"target group {target_group_arn} is not attached to any load balancer")
    if len(arns) > 1:
        reader.notes.append(f"the target group serves {len(arns)} load balancers; auditing {arns[0]}")
    view = reader.deployment(f"target group {target_group_arn}", arns[0], target_group_arn)
    return _with_registry(reader, view, registry_id)


def _pages(call: Any, token_in: str, token_out: str, key: str, **kwargs: Any) -> Iterator[Any]:
    """Every item under ``key`` across the pages of ``call``."""
    while True:
        page = call(**kwargs)
        yield from page.get(key) or []
        token = page.get(token_out)
        if not token:
            return
        kwargs[token_in] = token


class _Reader:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.clients: dict[str, Any] = {}
        self.notes: list[str] = []

    def client(self, name: str) -> Any:
        if name not in self.clients:
            with aws_errors(f"create a {name} client"):
                self.clients[name] = self.session.client(name)
        return self.clients[name]

    # -- the connection registry ------------------------------------------------------------

    def registry(self, registry_id: str, serverless: bool | None = None) -> Registry | None:
        """The replication group or Serverless cache ``registry_id``; ``None`` (with a note) if unreadable."""
        try:
            if serverless is not True:
                try:
                    return self.replication_group(registry_id)
                except ReadError as exc:
                    if serverless is False or "ReplicationGroupNotFound" not in str(exc):
                        raise
            return self.serverless_cache(registry_id)
        except ReadError as exc:
            self.notes.append(f"registry {registry_id} not read: {exc}")
            return None

    def replication_group(self, group_id: str) -> Registry:
        with aws_errors(f"describe ElastiCache replication group {group_id}"):
            (group,) = self.client("elasticache").describe_replication_groups(ReplicationGroupId=group_id)[
                "ReplicationGroups"
            ]
        cluster = bool(group.get("ClusterEnabled"))
        node_groups = group.get("NodeGroups") or []
        # MemberClusters lists every node (shards x (1 + replicas)); NodeGroupMembers only where cluster mode is off.
        replicas: int | None = None
        if group.get("MemberClusters") and node_groups:
            replicas = len(group["MemberClusters"]) // len(node_groups) - 1
        elif node_groups and all(g.get("NodeGroupMembers") for g in node_groups):
            replicas = min(len(g["NodeGroupMembers"]) for g in node_groups) - 1
        user_groups = tuple(group.get("UserGroupIds") or ())
        auth = self.rbac_auth(user_groups[0]) if user_groups else ("token" if group.get("AuthTokenEnabled") else "none")
        return Registry(
            id=group_id,
            mode="cluster" if cluster else "single",
            engine=(group.get("Engine") or None),
            node_type=group.get("CacheNodeType"),
            shards=len(node_groups) if cluster else 1,
            replicas_per_shard=replicas,
            multi_az=str(group.get("MultiAZ", "")).lower() == "enabled",
            automatic_failover=str(group.get("AutomaticFailover", "")).lower() in ("enabled", "enabling"),
            transit_encryption=bool(group.get("TransitEncryptionEnabled")),
            transit_encryption_mode=group.get("TransitEncryptionMode")
            or ("required" if group.get("TransitEncryptionEnabled") else None),
            at_rest_encryption=bool(group.get("AtRestEncryptionEnabled")),
            auth=auth,
            user_groups=user_groups,
        )

    def serverless_cache(self, name: str) -> Registry:
        with aws_errors(f"describe ElastiCache Serverless cache {name}"):
            (cache,) = self.client("elasticache").describe_serverless_caches(ServerlessCacheName=name)[
                "ServerlessCaches"
            ]
        group = cache.get("UserGroupId")
        return Registry(
            id=name,
            mode="serverless",
            engine=cache.get("Engine"),
            engine_version=cache.get("MajorEngineVersion"),
            transit_encryption=True,
            transit_encryption_mode="required",
            at_rest_encryption=True,
            auth=self.rbac_auth(group) if group else "none",
            user_groups=(group,) if group else (),
        )

    def rbac_auth(self, user_group_id: str) -> str | None:
        """``iam`` or ``token`` from the authentication type of the group's non-default users; ``None`` (noted)
        when the group or its users cannot be read."""
        try:
            client = self.client("elasticache")
            with aws_errors(f"describe ElastiCache user group {user_group_id}"):
                (group,) = client.describe_user_groups(UserGroupId=user_group_id)["UserGroups"]
            kinds = set()
            for user_id in group.get("UserIds") or []:
                with aws_errors(f"describe ElastiCache user {user_id}"):
                    (user,) = client.describe_users(UserId=user_id)["Users"]
                if user.get("UserName") != "default":
                    kinds.add(str((user.get("Authentication") or {}).get("Type", "")).lower())
        except ReadError as exc:
            self.notes.append(f"authentication of the registry's user group not read: {exc}")
            return None
        return "iam" if kinds == {"iam"} else "token" if kinds == {"password"} else None

    # -- CloudFormation ---------------------------------------------------------------------

    def stack_resources(self, stack_name: str) -> dict[str, list[tuple[str, str]]]:
        """``{resource type: [(logical id, physical id), ...]}`` of the stack's resources."""
        found: dict[str, list[tuple[str, str]]] = {}
        with aws_errors(f"list the resources of stack {stack_name}"):
            cfn = self.client("cloudformation")
            for r in _pages(
                cfn.list_stack_resources, "NextToken", "NextToken", "StackResourceSummaries", StackName=stack_name
            ):
                if r.get("PhysicalResourceId"):
                    found.setdefault(r["ResourceType"], []).append((r["LogicalResourceId"], r["PhysicalResourceId"]))
        return found

    # -- load balancing ---------------------------------------------------------------------

    def deployment(
        self,
        source: str,
        lb_arn: str,
        tg_arn: str | None,
        stack_services: list[str] | None = None,
        stack_cluster: str | None = None,
    ) -> DeploymentView:
        lb = self.load_balancer(lb_arn)
        tg_arn = tg_arn or websocket_target_group(lb)
        tg = self.target_group(tg_arn) if tg_arn else None
        if tg is None:
            self.notes.append("no target group: no listener of the load balancer forwards")
        service_data = self.find_service(tg_arn, stack_services, stack_cluster)
        service = task = alternate = None
        if service_data is not None:
            service = self.service(service_data, tg_arn)
            task = self.task_definition(service_data, tg_arn)
            if tg_arn and tg_arn not in service.target_groups:
                # The weights point at the alternate (green) group after a traffic shift: audit the pair the
                # service names, its target group first.
                for shift in service.shift_targets:
                    if shift.alternate_target_group == tg_arn:
                        tg_arn, tg = shift.target_group, self.target_group(shift.target_group)
            alternate_arn = next(
                (t.alternate_target_group for t in service.shift_targets if t.target_group == tg_arn), None
            )
            alternate = self.target_group(alternate_arn) if alternate_arn else None
        return DeploymentView(source, lb, tg, service, task, tuple(self.notes), alternate_target_group=alternate)

    def load_balancer(self, arn: str) -> LoadBalancer:
        elbv2 = self.client("elbv2")
        with aws_errors(f"describe load balancer {arn}"):
            data = elbv2.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]
        if data.get("Type", "application") != "application":
            raise ReadError(f"{arn} is a {data.get('Type')} load balancer; stickyws audits Application Load Balancers")
        with aws_errors(f"read the attributes of load balancer {arn}"):
            attrs = elbv2.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]
        with aws_errors(f"list the listeners of load balancer {arn}"):
            listeners = list(_pages(elbv2.describe_listeners, "Marker", "NextMarker", "Listeners", LoadBalancerArn=arn))
        return LoadBalancer(
            id=arn,
            name=data.get("LoadBalancerName"),
            type=data.get("Type", "application"),
            scheme=data.get("Scheme"),
            security_groups=tuple(data.get("SecurityGroups") or ()),
            attributes={a["Key"]: a["Value"] for a in attrs},
            listeners=tuple(self.listener(item) for item in listeners),
        )

    def listener(self, data: Mapping[str, Any]) -> Listener:
        arn = data["ListenerArn"]
        with aws_errors(f"list the rules of listener {arn}"):
            rules = list(_pages(self.client("elbv2").describe_rules, "Marker", "NextMarker", "Rules", ListenerArn=arn))
        parsed = [
            ListenerRule(
                priority=str(r.get("Priority", "?")),
                conditions=tuple(_condition(c) for c in r.get("Conditions") or []),
                actions=tuple(_action(a) for a in r.get("Actions") or []),
                id=r.get("RuleArn"),
            )
            for r in rules
            if not r.get("IsDefault") and r.get("Priority") != "default"
        ]
        parsed.sort(key=lambda r: int(r.priority) if r.priority.isdigit() else 1 << 30)
        default = ListenerRule("default", (), tuple(_action(a) for a in data.get("DefaultActions") or []))
        return Listener(
            id=arn,
            protocol=str(data.get("Protocol", "?")),
            port=data.get("Port"),
            ssl_policy=data.get("SslPolicy"),
            rules=(*parsed, default),
        )

    def describe_target_group(self, arn: str) -> Mapping[str, Any]:
        with aws_errors(f"describe target group {arn}"):
            groups = self.client("elbv2").describe_target_groups(TargetGroupArns=[arn])["TargetGroups"]
        return dict(groups[0])

    def target_group(self, arn: str) -> TargetGroup:
        data = self.describe_target_group(arn)
        with aws_errors(f"read the attributes of target group {arn}"):
            attrs = self.client("elbv2").describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
        return TargetGroup(
            id=arn,
            protocol=data.get("Protocol"),
            protocol_version=data.get("ProtocolVersion"),
            port=data.get("Port"),
            target_type=data.get("TargetType"),
            health_check=HealthCheck(
                path=data.get("HealthCheckPath"),
                interval_s=data.get("HealthCheckIntervalSeconds"),
                timeout_s=data.get("HealthCheckTimeoutSeconds"),
                healthy_threshold=data.get("HealthyThresholdCount"),
                unhealthy_threshold=data.get("UnhealthyThresholdCount"),
                matcher=(data.get("Matcher") or {}).get("HttpCode"),
            ),
            attributes={a["Key"]: a["Value"] for a in attrs},
            target_control_port=data.get("TargetControlPort"),
            **self.target_counts(arn),
        )

    def target_counts(self, arn: str) -> dict[str, int]:
        """``registered_targets`` and ``healthy_targets`` of target group ``arn``; empty (with a note) if unreadable."""
        try:
            with aws_errors(f"read the target health of target group {arn}"):
                health = self.client("elbv2").describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        except ReadError as exc:
            self.notes.append(f"targets of {arn} not counted: {exc}")
            return {}
        states = [str((h.get("TargetHealth") or {}).get("State", "")) for h in health]
        return {"registered_targets": len(states), "healthy_targets": states.count("healthy")}

    # -- ECS --------------------------------------------------------------------------------

    def find_service(
        self, tg_arn: str | None, stack_services: list[str] | None, stack_cluster: str | None
    ) -> Mapping[str, Any] | None:
        """The ECS service registered with ``tg_arn`` (from the stack when given, else by scanning)."""
        ecs = self.client("ecs")
        if stack_services is not None:
            if not stack_services:
                self.notes.append("the stack has no ECS service")
                return None
            cluster = stack_cluster or _cluster_of(stack_services[0]) or "default"
            described = []
            with aws_errors(f"describe the ECS services of cluster {cluster}"):
                for i in range(0, len(stack_services), 10):
                    described += ecs.describe_services(cluster=cluster, services=stack_services[i : i + 10])["services"]
            for svc in described:
                if tg_arn and _registers(svc, tg_arn):
                    return dict(svc)
            if len(described) == 1:
                self.notes.append(
                    f"the stack's ECS service {described[0].get('serviceName')} is not registered "
                    "with the target group (its loadBalancers list does not name it)"
                )
                return dict(described[0])
            self.notes.append("no ECS service of the stack is registered with the target group")
            return None
        if tg_arn is None:
            return None
        return self.scan_services(tg_arn)

    def scan_services(self, tg_arn: str) -> Mapping[str, Any] | None:
        ecs, calls = self.client("ecs"), 0
        with aws_errors("search the ECS services for the target group"):
            for cluster in _pages(ecs.list_clusters, "nextToken", "nextToken", "clusterArns"):
                arns = list(_pages(ecs.list_services, "nextToken", "nextToken", "serviceArns", cluster=cluster))
                calls += 2 + len(arns) // 100
                for i in range(0, len(arns), 10):
                    if calls >= MAX_SCAN_CALLS:
                        self.notes.append(f"stopped searching ECS services after about {calls} calls")
                        return None
                    calls += 1
                    for svc in ecs.describe_services(cluster=cluster, services=arns[i : i + 10])["services"]:
                        if _registers(svc, tg_arn):
                            return dict(svc)
                if calls >= MAX_SCAN_CALLS:
                    self.notes.append(f"stopped searching ECS services after about {calls} calls")
                    return None
        self.notes.append("no ECS service in this account and region is registered with the target group")
        return None

    def service(self, data: Mapping[str, Any], tg_arn: str | None) -> Service:
        deployment = data.get("deploymentConfiguration") or {}
        breaker = deployment.get("deploymentCircuitBreaker") or {}
        network = (data.get("networkConfiguration") or {}).get("awsvpcConfiguration") or {}
        strategy = deployment.get("strategy")
        if str(strategy or "").upper() == "CANARY":
            canary = deployment.get("canaryConfiguration") or {}
            step_percent, step_bake = canary.get("canaryPercent"), canary.get("canaryBakeTimeInMinutes")
        else:
            linear = deployment.get("linearConfiguration") or {}
            step_percent, step_bake = linear.get("stepPercent"), linear.get("stepBakeTimeInMinutes")
        shifts = [
            ShiftTarget(
                target_group=str(m.get("targetGroupArn", "?")),
                alternate_target_group=a.get("alternateTargetGroupArn"),
                production_rule=a.get("productionListenerRule"),
                test_rule=a.get("testListenerRule"),
            )
            for m in data.get("loadBalancers") or []
            if isinstance(a := m.get("advancedConfiguration"), Mapping)
        ]
        stages = [s for h in deployment.get("lifecycleHooks") or [] for s in h.get("lifecycleStages") or []]
        return Service(
            id=str(data.get("serviceArn", "?")),
            desired_count=data.get("desiredCount"),
            min_healthy_percent=deployment.get("minimumHealthyPercent"),
            max_percent=deployment.get("maximumPercent"),
            circuit_breaker_enabled=breaker.get("enable"),
            circuit_breaker_rollback=breaker.get("rollback"),
            health_check_grace_s=data.get("healthCheckGracePeriodSeconds"),
            target_groups=tuple(m["targetGroupArn"] for m in data.get("loadBalancers") or [] if "targetGroupArn" in m),
            security_groups=self.security_groups(network.get("securityGroups") or []),
            strategy=strategy,
            bake_time_min=deployment.get("bakeTimeInMinutes"),
            step_percent=float(step_percent) if step_percent is not None else None,
            step_bake_time_min=step_bake,
            lifecycle_stages=tuple(dict.fromkeys(stages)),
            shift_targets=tuple(shifts),
        )

    def security_groups(self, ids: list[str]) -> tuple[SecurityGroup, ...]:
        if not ids:
            return ()
        with aws_errors(f"describe security groups {', '.join(ids)}"):
            groups = self.client("ec2").describe_security_groups(GroupIds=ids)["SecurityGroups"]
        return tuple(
            SecurityGroup(g["GroupId"], tuple(_permission(p) for p in g.get("IpPermissions") or [])) for g in groups
        )

    def task_definition(self, service: Mapping[str, Any], tg_arn: str | None) -> TaskDefinition | None:
        arn = service.get("taskDefinition")
        if not arn:
            return None
        with aws_errors(f"describe task definition {arn}"):
            data = self.client("ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"]
        wanted = next(
            (m.get("containerName") for m in service.get("loadBalancers") or [] if m.get("targetGroupArn") == tg_arn),
            None,
        )
        containers = data.get("containerDefinitions") or []
        chosen = next((c for c in containers if wanted and c.get("name") == wanted), None)
        if chosen is None:
            servers = [c for c in containers if _is_server(c)]
            chosen = servers[0] if servers else (containers[0] if containers else None)
        container = None
        if chosen is not None:
            labels = {
                str(k): str(v) for k, v in (chosen.get("dockerLabels") or {}).items() if str(k).startswith(LABEL_PREFIX)
            }
            entries = chosen.get("environment") or []
            container = Container(
                name=str(chosen.get("name", "?")),
                stop_timeout_s=chosen.get("stopTimeout"),
                environment={
                    e["name"]: str(e.get("value", ""))
                    for e in entries
                    if keeps_variable(str(e.get("name", "")), labels)  # other variables may hold secrets
                },
                labels=labels,
                registry_url=any(e.get("name") == ENV_REDIS_URL for e in entries),
            )
        return TaskDefinition(id=str(arn), cpu=data.get("cpu"), memory_mib=data.get("memory"), container=container)


def _registers(service: Mapping[str, Any], tg_arn: str) -> bool:
    """Whether ECS service ``service`` names ``tg_arn`` as a target group or as an alternate (green) one."""
    for m in service.get("loadBalancers") or []:
        alternate = (m.get("advancedConfiguration") or {}).get("alternateTargetGroupArn")
        if tg_arn in (m.get("targetGroupArn"), alternate):
            return True
    return False


def _is_server(container: Mapping[str, Any]) -> bool:
    """Whether a container definition carries ``stickyws.*`` labels or ``STICKYWS_*`` settings."""
    if any(str(k).startswith(LABEL_PREFIX) for k in container.get("dockerLabels") or {}):
        return True
    return any(str(e.get("name", "")).startswith(ENV_PREFIX) for e in container.get("environment") or [])


def _cluster_of(service_arn: str) -> str | None:
    """The cluster name of a long-format service ARN (``...:service/CLUSTER/NAME``)."""
    parts = service_arn.split(":")[-1].split("/")
    return parts[1] if len(parts) == 3 else None


def _condition(data: Mapping[str, Any]) -> RuleCondition:
    field = str(data.get("Field", ""))
    header = data.get("HttpHeaderConfig")
    if field == "http-header" and isinstance(header, Mapping):
        return RuleCondition(field, tuple(header.get("Values") or ()), str(header.get("HttpHeaderName", "")))
    for key in ("PathPatternConfig", "HostHeaderConfig", "HttpRequestMethodConfig", "SourceIpConfig"):
        config = data.get(key)
        if isinstance(config, Mapping) and config.get("Values"):
            return RuleCondition(field, tuple(config["Values"]))
    query = data.get("QueryStringConfig")
    if isinstance(query, Mapping) and query.get("Values"):
        return RuleCondition(field, tuple(f"{v.get('Key') or ''}={v.get('Value')}" for v in query["Values"]))
    return RuleCondition(field, tuple(data.get("Values") or ()))


def _action(data: Mapping[str, Any]) -> Action:
    groups = [data["TargetGroupArn"]] if data.get("TargetGroupArn") else []
    forward = data.get("ForwardConfig") or {}
    entries = [t for t in forward.get("TargetGroups") or [] if t.get("TargetGroupArn")]
    groups += [t["TargetGroupArn"] for t in entries]
    weights = {t["TargetGroupArn"]: t.get("Weight") for t in entries}
    stickiness = (forward.get("TargetGroupStickinessConfig") or {}).get("Enabled")
    redirect = data.get("RedirectConfig") or {}
    ordered = tuple(dict.fromkeys(groups))
    return Action(
        str(data.get("Type", "")),
        ordered,
        redirect.get("Protocol"),
        tuple(weights.get(g) for g in ordered) if weights else (),
        None if stickiness is None else bool(stickiness),
    )


def _permission(data: Mapping[str, Any]) -> IngressPermission:
    sources = [f"sg:{p['GroupId']}" for p in data.get("UserIdGroupPairs") or [] if p.get("GroupId")]
    sources += [f"cidr:{r['CidrIp']}" for r in data.get("IpRanges") or [] if r.get("CidrIp")]
    sources += [f"cidr:{r['CidrIpv6']}" for r in data.get("Ipv6Ranges") or [] if r.get("CidrIpv6")]
    sources += [f"prefix-list:{p['PrefixListId']}" for p in data.get("PrefixListIds") or [] if p.get("PrefixListId")]
    protocol = str(data.get("IpProtocol", "-1"))
    return IngressPermission(
        protocol="all" if protocol == "-1" else protocol,
        from_port=data.get("FromPort"),
        to_port=data.get("ToPort"),
        sources=tuple(sources),
    )
