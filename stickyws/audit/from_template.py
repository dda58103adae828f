"""Read a synthesized CloudFormation template (JSON) into a :class:`DeploymentView`.

Only what is statically resolvable is read (:mod:`stickyws.audit.template_values`: literals,
``Ref``/``Fn::GetAtt`` to a resource, ``Ref`` to a parameter with a ``Default``); any other
expression is left unresolved and named in the view's notes; it never turns into a guess.

The load balancer is the template's Application Load Balancer; the target group is the one
its ``Upgrade: websocket`` rule forwards to (else the default action's); the service is the
ECS service registered with that target group. Whether ``StickyWebSocketLoadBalancer`` created the
load balancer or was given it is read from the resources' construct paths (``aws:cdk:path``
metadata), else from their logical ids; a load balancer without a ``Name`` is named by its construct path.
The server container's ``stickyws.*`` Docker labels say
whose server it is and which variables carry its settings.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stickyws.audit.template_values import TemplateValues
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

LB_TYPE = "AWS::ElasticLoadBalancingV2::LoadBalancer"
LISTENER_TYPE = "AWS::ElasticLoadBalancingV2::Listener"
RULE_TYPE = "AWS::ElasticLoadBalancingV2::ListenerRule"
TG_TYPE = "AWS::ElasticLoadBalancingV2::TargetGroup"
SERVICE_TYPE = "AWS::ECS::Service"
TASK_TYPE = "AWS::ECS::TaskDefinition"
SG_TYPE = "AWS::EC2::SecurityGroup"
INGRESS_TYPE = "AWS::EC2::SecurityGroupIngress"
REPLICATION_GROUP_TYPE = "AWS::ElastiCache::ReplicationGroup"
SERVERLESS_CACHE_TYPE = "AWS::ElastiCache::ServerlessCache"
USER_GROUP_TYPE = "AWS::ElastiCache::UserGroup"
USER_TYPE = "AWS::ElastiCache::User"


class TemplateError(AuditError):
    """The template cannot be read or holds no Application Load Balancer; the message says which."""


def load_template(path: str | Path) -> dict[str, Any]:
    """The template at ``path`` as a dict; raises :class:`TemplateError` with a one-line reason.

    ``path`` may be a cloud assembly directory (``cdk.out``) holding exactly one ``*.template.json``.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.template.json"))
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise TemplateError(f"{path} holds {len(found)} *.template.json files ({names}); pass one of them")
        path = found[0]
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise TemplateError(f"cannot read template {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise TemplateError(
            f"template {path} is not JSON ({exc}); pass a synthesized cdk.out/*.template.json"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"template {path} has no Resources section")
    return data


def view_from_template(template: Mapping[str, Any], source: str = "template") -> DeploymentView:
    """The deployment described by ``template``; raises :class:`TemplateError` without an ALB."""
    return _Reader(template).read(source)


class _Reader(TemplateValues):
    def __init__(self, template: Mapping[str, Any]) -> None:
        resources = template.get("Resources")
        if not isinstance(resources, Mapping):
            raise TemplateError("template has no Resources section")
        params = template.get("Parameters")
        super().__init__(resources, params if isinstance(params, Mapping) else {})

    # -- resources --------------------------------------------------------------------------

    def read(self, source: str) -> DeploymentView:
        albs = [(i, p) for i, p in self.of_type(LB_TYPE) if p.get("Type", "application") == "application"]
        if not albs:
            raise TemplateError(
                f"no Application Load Balancer ({LB_TYPE}) in the template; "
                "a stack that reuses an existing load balancer is audited live: --load-balancer-arn ARN"
            )
        if len(albs) > 1:
            self.notes.append(f"{len(albs)} load balancers in the template; auditing {albs[0][0]}")
        lb = self.load_balancer(*albs[0])
        listener_ids = {listener.id for listener in lb.listeners}
        rules = [
            (i, self.path(i)) for i, p in self.of_type(RULE_TYPE) if self.text(p.get("ListenerArn")) in listener_ids
        ]
        lb_path = self.path(lb.id)
        origin = load_balancer_origin((lb.id, lb_path), rules)
        name = lb.name or (lb_path.removesuffix("/Resource") if lb_path else None)  # the report's name for it
        lb = dataclasses.replace(lb, origin=origin, name=name)
        tg_id = websocket_target_group(lb)
        if tg_id is None:
            candidates = [i for i, _ in self.of_type(TG_TYPE)]
            tg_id = candidates[0] if len(candidates) == 1 else None
        tg_id = self.production_target_group(tg_id)
        tg = self.target_group(tg_id) if tg_id else None
        if tg is None:
            self.notes.append("no target group found behind the load balancer")
        service, task_ref, container_name = self.service(tg_id)
        task = self.task_definition(task_ref, container_name) if task_ref else None
        registry = self.registry()
        declared = any(self.of_type(REPLICATION_GROUP_TYPE)) or any(self.of_type(SERVERLESS_CACHE_TYPE))
        alternate_id = next(
            (t.alternate_target_group for t in service.shift_targets if t.alternate_target_group), None
        ) if service is not None else None  # fmt: skip
        alternate = self.target_group(alternate_id) if alternate_id else None
        return DeploymentView(source, lb, tg, service, task, tuple(self.notes), registry, declared, alternate)

    def production_target_group(self, tg_id: str | None) -> str | None:
        """``tg_id``, or the service's target group when ``tg_id`` is that service's alternate (green) one."""
        for _, props in self.of_type(SERVICE_TYPE):
            for mapping in props.get("LoadBalancers") or []:
                advanced = mapping.get("AdvancedConfiguration") if isinstance(mapping, Mapping) else None
                if (
                    isinstance(advanced, Mapping)
                    and tg_id
                    and self.text(advanced.get("AlternateTargetGroupArn")) == tg_id
                ):
                    return self.text(mapping.get("TargetGroupArn")) or tg_id
        return tg_id

    # -- the connection registry ------------------------------------------------------------

    def registry(self) -> Registry | None:
        """The template's replication group or Serverless cache (the first, noted when there are more)."""
        found = [("rg", i, p) for i, p in self.of_type(REPLICATION_GROUP_TYPE)]
        found += [("serverless", i, p) for i, p in self.of_type(SERVERLESS_CACHE_TYPE)]
        if not found:
            self.notes.append(
                "no ElastiCache replication group or Serverless cache in the template (registry not read)"
            )
            return None
        if len(found) > 1:
            self.notes.append(
                f"{len(found)} ElastiCache caches in the template; reporting {found[0][1]} as the registry"
            )
        kind, logical_id, props = found[0]
        if kind == "serverless":
            group = self.text(props.get("UserGroupId"))
            return Registry(
                id=logical_id,
                mode="serverless",
                engine=self.text(props.get("Engine")),
                engine_version=self.text(props.get("MajorEngineVersion")),
                transit_encryption=True,  # Serverless always requires TLS
                transit_encryption_mode="required",
                at_rest_encryption=True,
                auth=self.auth(group, props.get("AuthToken")),
                user_groups=(group,) if group else (),
            )
        cluster = (
            str(self.text(props.get("ClusterMode")) or "").lower() == "enabled"
            or (self.number(props.get("NumNodeGroups"), "NumNodeGroups") or 1) > 1
        )
        groups = self.texts(props.get("UserGroupIds") or [])
        shards = self.number(props.get("NumNodeGroups"), "NumNodeGroups") if cluster else 1
        if cluster:
            replicas = self.number(props.get("ReplicasPerNodeGroup"), "ReplicasPerNodeGroup")
        else:
            clusters = self.number(props.get("NumCacheClusters"), "NumCacheClusters")
            replicas = clusters - 1 if clusters is not None else None
        transit = self.flag(props.get("TransitEncryptionEnabled"))
        return Registry(
            id=logical_id,
            mode="cluster" if cluster else "single",
            engine=self.text(props.get("Engine")),
            engine_version=self.text(props.get("EngineVersion")),
            node_type=self.text(props.get("CacheNodeType")),
            shards=shards,
            replicas_per_shard=replicas,
            multi_az=self.flag(props.get("MultiAZEnabled")) or False,
            automatic_failover=self.flag(props.get("AutomaticFailoverEnabled")) or False,
            transit_encryption=transit or False,
            transit_encryption_mode=self.text(props.get("TransitEncryptionMode")) or ("required" if transit else None),
            at_rest_encryption=self.flag(props.get("AtRestEncryptionEnabled")) or False,
            auth=self.auth(groups[0] if groups else None, props.get("AuthToken")),
            user_groups=groups,
        )

    def auth(self, user_group_id: str | None, auth_token: Any) -> str | None:
        """``iam``/``token`` from the user group's non-default users, ``token`` for an AUTH token, else ``none``."""
        if user_group_id:
            groups = [p for _, p in self.of_type(USER_GROUP_TYPE) if self.text(p.get("UserGroupId")) == user_group_id]
            group = groups[0] if groups else None
            if group is None:
                self.notes.append(f"user group {user_group_id} is not defined in this template (auth not read)")
                return None
            ids = set(self.texts(group.get("UserIds")))
            kinds = {
                str(
                    (p.get("AuthenticationMode") or {}).get("Type") or ("password" if p.get("Passwords") else "")
                ).lower()
                for _, p in self.of_type(USER_TYPE)
                if self.text(p.get("UserId")) in ids and self.text(p.get("UserName")) != "default"
            }
            return "iam" if kinds == {"iam"} else "token" if kinds == {"password"} else None
        return "token" if auth_token is not None else "none"

    def load_balancer(self, logical_id: str, props: Mapping[str, Any]) -> LoadBalancer:
        listeners = tuple(
            self.listener(i, p)
            for i, p in self.of_type(LISTENER_TYPE)
            if self.text(p.get("LoadBalancerArn")) == logical_id
        )
        groups = tuple(
            g for g in (self.text(v, "load balancer security group") for v in props.get("SecurityGroups") or []) if g
        )
        return LoadBalancer(
            id=logical_id,
            name=self.text(props.get("Name")) if props.get("Name") is not None else None,
            type=str(props.get("Type", "application")),
            scheme=self.text(props.get("Scheme", "internet-facing")),
            security_groups=groups,
            attributes=self.attributes(props.get("LoadBalancerAttributes"), "load balancer attribute"),
            listeners=listeners,
        )

    def attributes(self, entries: Any, what: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for entry in entries or []:
            if not isinstance(entry, Mapping) or "Key" not in entry:
                continue
            key = str(entry["Key"])
            value = self.text(entry.get("Value"), f"{what} {key}")
            if value is not None:
                found[key] = value
        return found

    def listener(self, logical_id: str, props: Mapping[str, Any]) -> Listener:
        rules = [
            ListenerRule(
                priority=self.text(p.get("Priority")) or "?",
                conditions=tuple(self.condition(c) for c in p.get("Conditions") or [] if isinstance(c, Mapping)),
                actions=tuple(self.action(a) for a in p.get("Actions") or [] if isinstance(a, Mapping)),
                id=i,
            )
            for i, p in self.of_type(RULE_TYPE)
            if self.text(p.get("ListenerArn")) == logical_id
        ]
        rules.sort(key=lambda r: int(r.priority) if r.priority.isdigit() else 1 << 30)
        default = ListenerRule(
            "default", (), tuple(self.action(a) for a in props.get("DefaultActions") or [] if isinstance(a, Mapping))
        )
        protocol = str(self.text(props.get("Protocol")) or "?")
        policy = props.get("SslPolicy")
        return Listener(
            id=logical_id,
            protocol=protocol,
            port=self.number(props.get("Port"), "listener port"),
            ssl_policy=self.text(policy, "listener SslPolicy") if policy is not None else None,
            rules=(*rules, default),
        )

    def condition(self, props: Mapping[str, Any]) -> RuleCondition:
        field = str(props.get("Field", ""))
        header = props.get("HttpHeaderConfig")
        if isinstance(header, Mapping):
            values = header.get("Values") or []
            return RuleCondition(field, self.texts(values), str(header.get("HttpHeaderName", "")))
        for key in ("PathPatternConfig", "HostHeaderConfig", "HttpRequestMethodConfig", "SourceIpConfig"):
            config = props.get(key)
            if isinstance(config, Mapping):
                return RuleCondition(field, self.texts(config.get("Values") or []))
        query = props.get("QueryStringConfig")
        if isinstance(query, Mapping):
            pairs = [v for v in query.get("Values") or [] if isinstance(v, Mapping)]
            return RuleCondition(
                field, tuple(f"{self.text(v.get('Key')) or ''}={self.text(v.get('Value'))}" for v in pairs)
            )
        return RuleCondition(field, self.texts(props.get("Values") or []))

    def action(self, props: Mapping[str, Any]) -> Action:
        kind = str(props.get("Type", ""))
        groups = []
        if props.get("TargetGroupArn") is not None:
            groups.append(self.text(props["TargetGroupArn"]))
        weights: dict[str, int | None] = {}
        sticky = None
        forward = props.get("ForwardConfig")
        if isinstance(forward, Mapping):
            for entry in forward.get("TargetGroups") or []:
                group = self.text(entry.get("TargetGroupArn")) if isinstance(entry, Mapping) else None
                if group:
                    groups.append(group)
                    weights[group] = self.number(entry.get("Weight"), "forward weight")
            stickiness = forward.get("TargetGroupStickinessConfig")
            if isinstance(stickiness, Mapping) and stickiness.get("Enabled") is not None:
                sticky = self.flag(stickiness.get("Enabled"))
        redirect = props.get("RedirectConfig")
        protocol = self.text(redirect.get("Protocol")) if isinstance(redirect, Mapping) else None
        ordered = tuple(dict.fromkeys(g for g in groups if g))
        return Action(kind, ordered, protocol, tuple(weights.get(g) for g in ordered) if weights else (), sticky)

    def target_group(self, logical_id: str) -> TargetGroup | None:
        resource = self.resources.get(logical_id)
        if not isinstance(resource, Mapping) or resource.get("Type") != TG_TYPE:
            self.notes.append(f"target group {logical_id} is not defined in this template")
            return None
        props = resource.get("Properties") or {}
        matcher = props.get("Matcher")
        code = matcher.get("HttpCode") if isinstance(matcher, Mapping) else None
        health = HealthCheck(
            path=self.text(props["HealthCheckPath"], "HealthCheckPath") if "HealthCheckPath" in props else None,
            interval_s=self.number(props.get("HealthCheckIntervalSeconds"), "HealthCheckIntervalSeconds"),
            timeout_s=self.number(props.get("HealthCheckTimeoutSeconds"), "HealthCheckTimeoutSeconds"),
            healthy_threshold=self.number(props.get("HealthyThresholdCount"), "HealthyThresholdCount"),
            unhealthy_threshold=self.number(props.get("UnhealthyThresholdCount"), "UnhealthyThresholdCount"),
            matcher=self.text(code, "Matcher.HttpCode") if code is not None else None,
        )
        return TargetGroup(
            id=logical_id,
            protocol=self.text(props.get("Protocol")) if props.get("Protocol") is not None else None,
            protocol_version=self.text(props.get("ProtocolVersion", "HTTP1")),
            port=self.number(props.get("Port"), "target group port"),
            target_type=self.text(props.get("TargetType", "instance")),
            health_check=health,
            attributes=self.attributes(props.get("TargetGroupAttributes"), "target group attribute"),
            target_control_port=self.number(props.get("TargetControlPort"), "TargetControlPort"),
        )

    def service(self, tg_id: str | None) -> tuple[Service | None, str | None, str | None]:
        services = list(self.of_type(SERVICE_TYPE))
        chosen = None
        container_name = None
        for logical_id, props in services:
            for mapping in props.get("LoadBalancers") or []:
                if isinstance(mapping, Mapping) and tg_id and self.text(mapping.get("TargetGroupArn")) == tg_id:
                    chosen, container_name = (logical_id, props), self.text(mapping.get("ContainerName"))
        if chosen is None:
            if services:
                self.notes.append("no ECS service in the template is registered with the target group")
            return None, None, None
        logical_id, props = chosen
        deployment = props.get("DeploymentConfiguration") or {}
        strategy = self.text(deployment.get("Strategy")) if deployment.get("Strategy") is not None else None
        step = deployment.get("LinearConfiguration") or {}
        step_percent = step.get("StepPercent")
        step_bake = step.get("StepBakeTimeInMinutes")
        if (strategy or "").upper() == "CANARY":
            step = deployment.get("CanaryConfiguration") or {}
            step_percent, step_bake = step.get("CanaryPercent"), step.get("CanaryBakeTimeInMinutes")
        percent = self.text(step_percent, "step percent") if step_percent is not None else None
        hooks = [h for h in deployment.get("LifecycleHooks") or [] if isinstance(h, Mapping)]
        shifts = [
            ShiftTarget(
                target_group=self.text(m.get("TargetGroupArn")) or "?",
                alternate_target_group=self.text(a.get("AlternateTargetGroupArn"), "AlternateTargetGroupArn"),
                production_rule=self.text(a.get("ProductionListenerRule"), "ProductionListenerRule"),
                test_rule=self.text(a["TestListenerRule"], "TestListenerRule") if a.get("TestListenerRule") else None,
            )
            for m in props.get("LoadBalancers") or []
            if isinstance(m, Mapping) and isinstance(a := m.get("AdvancedConfiguration"), Mapping)
        ]
        breaker = deployment.get("DeploymentCircuitBreaker") or {}
        network = (props.get("NetworkConfiguration") or {}).get("AwsvpcConfiguration") or {}
        group_ids = [
            g for g in (self.text(v, "service security group") for v in network.get("SecurityGroups") or []) if g
        ]
        enable = self.text(breaker.get("Enable")) if "Enable" in breaker else None
        rollback = self.text(breaker.get("Rollback")) if "Rollback" in breaker else None
        service = Service(
            id=logical_id,
            desired_count=self.number(props.get("DesiredCount"), "DesiredCount"),
            min_healthy_percent=self.number(deployment.get("MinimumHealthyPercent"), "MinimumHealthyPercent"),
            max_percent=self.number(deployment.get("MaximumPercent"), "MaximumPercent"),
            circuit_breaker_enabled=None if enable is None else enable == "true",
            circuit_breaker_rollback=None if rollback is None else rollback == "true",
            health_check_grace_s=self.number(props.get("HealthCheckGracePeriodSeconds"), "HealthCheckGracePeriod"),
            target_groups=(tg_id,) if tg_id else (),
            security_groups=tuple(self.security_group(g) for g in group_ids),
            strategy=strategy,
            bake_time_min=self.number(deployment.get("BakeTimeInMinutes"), "BakeTimeInMinutes"),
            step_percent=float(percent) if percent is not None else None,
            step_bake_time_min=self.number(step_bake, "step bake time"),
            lifecycle_stages=tuple(dict.fromkeys(t for h in hooks for t in self.texts(h.get("LifecycleStages") or []))),
            shift_targets=tuple(shifts),
        )
        return service, self.text(props.get("TaskDefinition"), "service TaskDefinition"), container_name

    def security_group(self, logical_id: str) -> SecurityGroup:
        resource = self.resources.get(logical_id)
        if not isinstance(resource, Mapping) or resource.get("Type") != SG_TYPE:
            self.notes.append(f"security group {logical_id} is not defined in this template")
            return SecurityGroup(logical_id, None)
        inline = (resource.get("Properties") or {}).get("SecurityGroupIngress") or []
        perms = [self.permission(p) for p in inline if isinstance(p, Mapping)]
        perms += [
            self.permission(p) for _, p in self.of_type(INGRESS_TYPE) if self.text(p.get("GroupId")) == logical_id
        ]
        return SecurityGroup(logical_id, tuple(perms))

    def permission(self, props: Mapping[str, Any]) -> IngressPermission:
        sources = []
        for key, prefix in (
            ("SourceSecurityGroupId", "sg"),
            ("CidrIp", "cidr"),
            ("CidrIpv6", "cidr"),
            ("SourcePrefixListId", "prefix-list"),
        ):
            if props.get(key) is not None:
                sources.append(f"{prefix}:{self.text(props[key]) or '<unresolved>'}")
        protocol = str(self.text(props.get("IpProtocol", "-1")) or "-1")
        return IngressPermission(
            protocol="all" if protocol == "-1" else protocol,
            from_port=self.number(props.get("FromPort"), "FromPort"),
            to_port=self.number(props.get("ToPort"), "ToPort"),
            sources=tuple(sources),
        )

    def task_definition(self, logical_id: str, container_name: str | None) -> TaskDefinition | None:
        resource = self.resources.get(logical_id)
        if not isinstance(resource, Mapping) or resource.get("Type") != TASK_TYPE:
            self.notes.append(f"task definition {logical_id} is not defined in this template")
            return None
        props = resource.get("Properties") or {}
        containers = [c for c in props.get("ContainerDefinitions") or [] if isinstance(c, Mapping)]
        chosen = next((c for c in containers if container_name and self.text(c.get("Name")) == container_name), None)
        if chosen is None:
            chosen = next((c for c in containers if _is_server(c)), containers[0] if containers else None)
        container = None
        if chosen is not None:
            labels: dict[str, str] = {}
            docker_labels = chosen.get("DockerLabels")
            for key, raw in (docker_labels if isinstance(docker_labels, Mapping) else {}).items():
                if str(key).startswith(LABEL_PREFIX):
                    label = self.text(raw, f"container label {key}")
                    if label is not None:
                        labels[str(key)] = label
            env: dict[str, str] = {}
            entries = [e for e in chosen.get("Environment") or [] if isinstance(e, Mapping)]
            for entry in entries:
                name = str(entry.get("Name", ""))
                if not keeps_variable(name, labels):
                    continue  # only settings are read; other variables may hold secrets
                value = self.text(entry.get("Value"), f"container variable {name}")
                if value is not None:
                    env[name] = value
            container = Container(
                name=str(self.text(chosen.get("Name")) or "?"),
                stop_timeout_s=self.number(chosen.get("StopTimeout"), "StopTimeout"),
                environment=env,
                labels=labels,
                registry_url=any(e.get("Name") == ENV_REDIS_URL for e in entries),
            )
        return TaskDefinition(
            id=logical_id,
            cpu=self.text(props["Cpu"], "task Cpu") if props.get("Cpu") is not None else None,
            memory_mib=self.text(props["Memory"], "task Memory") if props.get("Memory") is not None else None,
            container=container,
        )


def _is_server(container: Mapping[str, Any]) -> bool:
    """Whether a container definition carries ``stickyws.*`` labels or ``STICKYWS_*`` settings."""
    labels = container.get("DockerLabels")
    if isinstance(labels, Mapping) and any(str(k).startswith(LABEL_PREFIX) for k in labels):
        return True
    entries = container.get("Environment") or []
    return any(isinstance(e, Mapping) and str(e.get("Name", "")).startswith(ENV_PREFIX) for e in entries)
