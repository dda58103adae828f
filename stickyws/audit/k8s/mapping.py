"""What Kubernetes manifests show of each setting, and where in them each setting is written.

:func:`read_settings` turns a :class:`~stickyws.audit.k8s.objects.KubernetesDeployment` into

* one :class:`~stickyws.audit.mapping.Observation` per setting the manifests decide (an attribute the
  manifests leave out takes the default the AWS Load Balancer Controller, AWS or Kubernetes applies,
  and the observation says which);
* a :class:`~stickyws.audit.view.DeploymentView` holding the load balancer and target group attributes
  and the server container, so the auditor's server reading and attribute checks apply unchanged;
* :class:`Places`: for each setting, the object and field a fix changes.

Defaults (the controller's documentation: Ingress annotations, TargetGroupConfiguration,
LoadBalancerConfiguration; Kubernetes API reference):

* load balancer and target group attributes: AWS's (:mod:`stickyws.settings.aws_names`: idle timeout
  60 s, HTTP/2 on, deregistration delay 300 s, stickiness off);
* Ingress health check: the controller's annotation defaults (path ``/``, interval 15 s, timeout 5 s,
  healthy 2, unhealthy 2, codes ``200``); Gateway API health check: AWS's (TargetGroupConfiguration
  leaves it to AWS: interval 30 s, healthy 5);
* target type: ``instance`` (annotation and TargetGroupConfiguration alike);
* Kubernetes: ``replicas`` 1, ``terminationGracePeriodSeconds`` 30, rolling update ``maxSurge`` and
  ``maxUnavailable`` 25 %, HPA ``minReplicas`` 1; no PodDisruptionBudget lets every pod be evicted;
  the readiness gate only with the namespace label (the controller injects it into pods created after).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from stickyws.audit.k8s.manifests import Manifest, mapping, sequence
from stickyws.audit.k8s.objects import KubernetesDeployment
from stickyws.audit.mapping import Observation
from stickyws.audit.view import (
    Container,
    DeploymentView,
    HealthCheck,
    LoadBalancer,
    TargetGroup,
    TaskDefinition,
    keeps_variable,
    settings_variables,
)
from stickyws.settings import ENV_REDIS_URL, FIELDS, Settings, env_name
from stickyws.settings.aws_names import (
    APP_COOKIE_NAME_KEY,
    HEALTH_CHECK_FIELDS,
    LOAD_BALANCER_ATTRIBUTES,
    STICKINESS_DURATION_DEFAULT,
    STICKINESS_DURATION_KEYS,
    TARGET_GROUP_ATTRIBUTES,
)
from stickyws.settings.scopes import SERVER_SIDE_GROUPS

ANNOTATION_PREFIX: Final = "alb.ingress.kubernetes.io/"
LB_ATTRIBUTES_ANNOTATION: Final = ANNOTATION_PREFIX + "load-balancer-attributes"
TG_ATTRIBUTES_ANNOTATION: Final = ANNOTATION_PREFIX + "target-group-attributes"
TARGET_TYPE_ANNOTATION: Final = ANNOTATION_PREFIX + "target-type"
#: The namespace label that makes the controller inject its readiness gate into new pods.
READINESS_GATE_LABEL: Final = "elbv2.k8s.aws/pod-readiness-gate-inject"
#: The prefix of the readiness gates the controller injects (``kubectl get pods -o yaml`` shows them).
READINESS_GATE_PREFIX: Final = "target-health.elbv2.k8s.aws"
#: The controller's target type when none is given (Ingress annotation and TargetGroupConfiguration).
DEFAULT_TARGET_TYPE: Final = "instance"

#: (setting, Ingress/Service annotation, controller default) -- the health check of an Ingress's target group.
INGRESS_HEALTH_CHECK: tuple[tuple[str, str, str], ...] = (
    ("health_check_path", "healthcheck-path", "/"),
    ("health_check_interval_s", "healthcheck-interval-seconds", "15"),
    ("health_check_timeout_s", "healthcheck-timeout-seconds", "5"),
    ("healthy_threshold_count", "healthy-threshold-count", "2"),
    ("unhealthy_threshold_count", "unhealthy-threshold-count", "2"),
    ("health_check_matcher", "success-codes", "200"),
)
#: TargetGroupConfiguration ``healthCheckConfig`` field of each health-check setting (AWS defaults apply).
GATEWAY_HEALTH_CHECK: Mapping[str, str] = {
    "health_check_path": "healthCheckPath",
    "health_check_interval_s": "healthCheckInterval",
    "health_check_timeout_s": "healthCheckTimeout",
    "healthy_threshold_count": "healthyThresholdCount",
    "unhealthy_threshold_count": "unhealthyThresholdCount",
    "health_check_matcher": "matcher.httpCode",
}
#: Kubernetes API defaults the manifests may leave out.
DEFAULT_REPLICAS: Final = 1
DEFAULT_GRACE_PERIOD_S: Final = 30
DEFAULT_ROLLING_PERCENT: Final = "25%"
DEFAULT_HPA_MIN_REPLICAS: Final = 1

_SLEEP = re.compile(r"(?:^|[\s;&|(])sleep\s+(\d+(?:\.\d+)?)s?\b")
_DRAIN_SELF = re.compile(r"\bdrain-self\b")


@dataclass
class Places:
    """Where each setting is written in the manifests: ``{setting: "Kind name: field"}``, for the fixes."""

    of: dict[str, str] = field(default_factory=dict)

    def where(self, name: str) -> str | None:
        """The object and field to change for setting ``name``, if the manifests hold it."""
        return self.of.get(name)


@dataclass(frozen=True)
class KubernetesSettings:
    """What :func:`read_settings` found: observations, the view the server is read from, the places, notes."""

    observed: Mapping[str, Observation]
    view: DeploymentView
    places: Places
    notes: tuple[str, ...]


def read_settings(deployment: KubernetesDeployment) -> KubernetesSettings:
    """The settings the manifests decide (see the module docstring for the defaults applied)."""
    return _Reader(deployment).read()


def parse_string_map(text: str) -> dict[str, str]:
    """A controller ``stringMap`` annotation (``k1=v1,k2=v2``) as a dict; spaces around items are ignored."""
    found: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            found[key.strip()] = value.strip()
    return found


def key_values(entries: Any) -> dict[str, str]:
    """A ``[{key, value}]`` list (``loadBalancerAttributes``, ``targetGroupAttributes``) as a dict."""
    return {
        str(mapping(e).get("key")): str(mapping(e).get("value", ""))
        for e in sequence(entries)
        if mapping(e).get("key") is not None
    }


def pre_stop_seconds(container: Mapping[str, Any]) -> tuple[float | None, str]:
    """The preStop delay of ``container`` and how it was read.

    ``sleep: {seconds: N}`` and an ``exec`` command that runs ``sleep N`` give N; no preStop gives 0;
    ``stickyws server drain-self`` gives ``None`` (the reference server waits its own
    ``pre_stop_delay_s``); any other hook gives ``None`` too, said in the text.
    """
    hook = mapping(mapping(container.get("lifecycle")).get("preStop"))
    if not hook:
        return 0.0, "no preStop hook"
    sleep = mapping(hook.get("sleep"))
    if "seconds" in sleep:
        try:
            return float(sleep["seconds"]), f"preStop sleep.seconds={sleep['seconds']}"
        except (TypeError, ValueError):
            return None, f"preStop sleep.seconds={sleep['seconds']!r} is not a number"
    command = " ".join(str(part) for part in sequence(mapping(hook.get("exec")).get("command")))
    if _DRAIN_SELF.search(command):
        return None, "preStop runs stickyws server drain-self (the server waits its pre_stop_delay_s)"
    match = _SLEEP.search(command)
    if match:
        return float(match.group(1)), f"preStop exec {command!r}"
    if command:
        return None, f"preStop exec {command!r} has no sleep the audit can read"
    return None, "preStop hook of a kind the audit does not read (httpGet?)"


def _int_or_percent(value: Any, replicas: int, *, round_up: bool) -> int | None:
    """A Kubernetes IntOrString (``1`` or ``"25%"``) as pods of ``replicas``; ``None`` when it does not parse."""
    text = str(value).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1]) * replicas / 100
            return math.ceil(share) if round_up else math.floor(share)
        return int(text)
    except ValueError:
        return None


def _as_percent(value: Any, replicas: int, *, round_up: bool) -> int | None:
    """An IntOrString as a percentage of ``replicas`` (``"25%"`` -> 25; ``1`` of 4 -> 25)."""
    text = str(value).strip()
    try:
        if text.endswith("%"):
            return int(float(text[:-1]))
        pods = int(text)
    except ValueError:
        return None
    share = pods * 100 / max(replicas, 1)
    return math.ceil(share) if round_up else math.floor(share)


class _Reader:
    def __init__(self, deployment: KubernetesDeployment) -> None:
        self.d = deployment
        self.found: dict[str, Observation] = {}
        self.places = Places()
        self.notes: list[str] = list(deployment.notes)

    def put(self, name: str, text: str | None, where: str, default: str | None, default_by: str = "AWS") -> None:
        """Observe ``name`` (only a setting the model has), from ``text`` or else from ``default``."""
        if name not in FIELDS:
            return  # a setting this version of the model does not have
        if text is not None:
            self.found[name] = Observation(name, text, where)
        elif default is not None:
            self.found[name] = Observation(name, default, f"{where} unset: {default_by} default", aws_default=True)

    def place(self, name: str, where: str) -> None:
        self.places.of.setdefault(name, where)

    def read(self) -> KubernetesSettings:
        lb, tg = self.load_balancer()
        container = self.container()
        self.kubernetes()
        task = TaskDefinition(id=self.d.workload.label, container=container) if container is not None else None
        view = DeploymentView(self.d.source, lb, tg, None, task, tuple(self.notes))
        return KubernetesSettings(self.found, view, self.places, tuple(self.notes))

    # -- the load balancer and target group --------------------------------------------------------

    def load_balancer(self) -> tuple[LoadBalancer | None, TargetGroup | None]:
        if self.d.api == "ingress":
            return self.ingress()
        if self.d.api == "gateway":
            return self.gateway()
        return None, None

    def ingress(self) -> tuple[LoadBalancer, TargetGroup]:
        ingress = self.d.ingress
        assert ingress is not None
        params = self.d.ingress_class_params
        params_attrs = key_values(params.spec.get("loadBalancerAttributes")) if params is not None else {}
        annotation = ingress.annotations.get(LB_ATTRIBUTES_ANNOTATION)
        if params is not None and params_attrs:
            lb_attrs, lb_where = params_attrs, f"IngressClassParams {params.name} spec.loadBalancerAttributes"
            if annotation:
                self.notes.append(
                    f"Ingress {ingress.name}'s annotation {LB_ATTRIBUTES_ANNOTATION} is ignored: IngressClassParams "
                    f"{params.name} sets spec.loadBalancerAttributes"
                )
        else:
            lb_attrs = parse_string_map(annotation or "")
            lb_where = f"Ingress {ingress.name} annotation {LB_ATTRIBUTES_ANNOTATION}"
        for name, key, default in LOAD_BALANCER_ATTRIBUTES:
            self.put(name, lb_attrs.get(key), f"{lb_where} {key}", default)
            self.place(name, f"{lb_where}: {key}")
        # Target group annotations on the Service win over the Ingress's (the controller's precedence).
        service = self.d.service

        def annotated(suffix: str) -> tuple[str | None, Manifest]:
            for owner in (service, ingress):
                if owner is not None and ANNOTATION_PREFIX + suffix in owner.annotations:
                    return owner.annotations[ANNOTATION_PREFIX + suffix], owner
            return None, ingress

        tg_text, tg_owner = annotated("target-group-attributes")
        tg_attrs = parse_string_map(tg_text or "")
        tg_where = f"{tg_owner.label} annotation {TG_ATTRIBUTES_ANNOTATION}"
        self.target_group_attributes(tg_attrs, tg_where)
        health: dict[str, str] = {}
        for name, suffix, default in INGRESS_HEALTH_CHECK:
            text, owner = annotated(suffix)
            where = f"{owner.label} annotation {ANNOTATION_PREFIX}{suffix}"
            self.put(name, text, where, default, "controller")
            self.place(name, where)
            if name in self.found:
                health[name] = self.found[name].text
        target_type, owner = annotated("target-type")
        where = f"{owner.label} annotation {TARGET_TYPE_ANNOTATION}"
        self.put("k8s_target_type", target_type, where, DEFAULT_TARGET_TYPE, "controller")
        self.place("k8s_target_type", where)
        lb = LoadBalancer(
            id=ingress.label,
            name=ingress.label,
            type="application",
            scheme=None,
            security_groups=(),
            attributes=lb_attrs,
        )
        return lb, self.target_group(tg_attrs, health, target_type or DEFAULT_TARGET_TYPE)

    def gateway(self) -> tuple[LoadBalancer, TargetGroup]:
        route = self.d.routes[0].manifest
        gateway = self.d.gateway
        own, inherited = self.d.gateway_configs
        # The GatewayClass's configuration wins on conflicts unless its mergingMode prefers the Gateway's.
        prefer_gateway = inherited is not None and inherited.spec.get("mergingMode") == "prefer-gateway"
        ordered = [c for c in ((own, inherited) if prefer_gateway else (inherited, own)) if c is not None]
        lb_attrs: dict[str, str] = {}
        wheres: dict[str, str] = {}
        for config in reversed(ordered):  # lower priority first, the winner overwrites
            for key, value in key_values(config.spec.get("loadBalancerAttributes")).items():
                lb_attrs[key], wheres[key] = (
                    value,
                    f"LoadBalancerConfiguration {config.name} spec.loadBalancerAttributes",
                )
        owner = (
            f"LoadBalancerConfiguration {own.name} spec.loadBalancerAttributes"
            if own is not None
            else (
                f"a LoadBalancerConfiguration named by Gateway {gateway.name}'s spec.infrastructure.parametersRef: "
                "spec.loadBalancerAttributes"
                if gateway is not None
                else f"a LoadBalancerConfiguration of HTTPRoute {route.name}'s Gateway: spec.loadBalancerAttributes"
            )
        )
        for name, key, default in LOAD_BALANCER_ATTRIBUTES:
            self.put(name, lb_attrs.get(key), f"{wheres.get(key, owner)} {key}", default)
            self.place(name, f"{wheres.get(key, owner)}: {key}")
        service_tgc, default_tgc = self.d.target_group_configs
        props = [mapping(t.spec.get("defaultConfiguration")) for t in (service_tgc, default_tgc) if t is not None]
        tg_attrs: dict[str, str] = {}
        for prop in reversed(props):  # attributes merge key by key, the Service's winning
            tg_attrs.update(key_values(prop.get("targetGroupAttributes")))
        service_name = self.d.service.name if self.d.service is not None else "?"
        tgc_where = (
            f"TargetGroupConfiguration {service_tgc.name} spec.defaultConfiguration"
            if service_tgc is not None
            else f"a TargetGroupConfiguration with targetReference Service {service_name}: spec.defaultConfiguration"
        )
        self.target_group_attributes(tg_attrs, f"{tgc_where}.targetGroupAttributes")
        # Other fields merge whole: the Service's TargetGroupConfiguration's when it sets them.
        health_config = next((mapping(p["healthCheckConfig"]) for p in props if "healthCheckConfig" in p), {})
        health: dict[str, str] = {}
        for name, _, _, default in HEALTH_CHECK_FIELDS:
            path = GATEWAY_HEALTH_CHECK[name]
            field_value: Any = health_config
            for part in path.split("."):
                field_value = mapping(field_value).get(part)
            where = f"{tgc_where}.healthCheckConfig.{path}"
            self.put(name, None if field_value is None else str(field_value), where, default)
            self.place(name, where)
            if name in self.found:
                health[name] = self.found[name].text
        target_type = next((str(p["targetType"]) for p in props if p.get("targetType") is not None), None)
        self.put("k8s_target_type", target_type, f"{tgc_where}.targetType", DEFAULT_TARGET_TYPE, "controller")
        self.place("k8s_target_type", f"{tgc_where}.targetType")
        label = gateway.label if gateway is not None else f"the Gateway of HTTPRoute {route.name}"
        lb = LoadBalancer(
            id=label, name=label, type="application", scheme=None, security_groups=(), attributes=lb_attrs
        )
        group = self.target_group(tg_attrs, health, target_type or DEFAULT_TARGET_TYPE)
        control = next((p["targetControlPort"] for p in props if p.get("targetControlPort") is not None), None)
        if control is not None and str(control).isdigit():
            group = dataclasses.replace(group, target_control_port=int(control))
        return lb, group

    def target_group_attributes(self, attrs: Mapping[str, str], where: str) -> None:
        for name, key, default in TARGET_GROUP_ATTRIBUTES:
            self.put(name, attrs.get(key), f"{where} {key}", default)
            self.place(name, f"{where}: {key}")
        kind = attrs.get("stickiness.type", "lb_cookie")
        duration_key = STICKINESS_DURATION_KEYS.get(kind, STICKINESS_DURATION_KEYS["lb_cookie"])
        self.put(
            "stickiness_duration_s", attrs.get(duration_key), f"{where} {duration_key}", STICKINESS_DURATION_DEFAULT
        )
        self.place("stickiness_duration_s", f"{where}: {duration_key}")
        if kind == "app_cookie":
            self.put("app_cookie_name", attrs.get(APP_COOKIE_NAME_KEY, ""), f"{where} {APP_COOKIE_NAME_KEY}", None)
        self.place("app_cookie_name", f"{where}: {APP_COOKIE_NAME_KEY}")

    def target_group(self, attrs: Mapping[str, str], health: Mapping[str, str], target_type: str) -> TargetGroup:
        def number(name: str) -> int | None:
            text = health.get(name, "")
            return int(text) if text.isdigit() else None

        check = HealthCheck(
            path=health.get("health_check_path"),
            interval_s=number("health_check_interval_s"),
            timeout_s=number("health_check_timeout_s"),
            healthy_threshold=number("healthy_threshold_count"),
            unhealthy_threshold=number("unhealthy_threshold_count"),
            matcher=health.get("health_check_matcher"),
        )
        label = self.d.service.label if self.d.service is not None else "target group"
        return TargetGroup(
            id=label,
            protocol="HTTP",
            protocol_version="HTTP1",
            port=None,
            target_type=target_type,
            health_check=check,
            attributes=dict(attrs),
        )

    # -- the server container ----------------------------------------------------------------------

    def container(self) -> Container | None:
        spec = self.d.container
        if spec is None:
            return None
        name = str(spec.get("name", "?"))
        labels = self.d.server_labels
        env: dict[str, str] = {}
        registry_url = False
        config_maps = {c.name: c for c in self.d.config_maps}

        def config_value(ref: Mapping[str, Any]) -> str | None:
            config = config_maps.get(str(ref.get("name")))
            value = mapping(config.body.get("data")).get(str(ref.get("key"))) if config is not None else None
            return None if value is None else str(value)

        for source in sequence(spec.get("envFrom")):
            ref = mapping(mapping(source).get("configMapRef"))
            config = config_maps.get(str(ref.get("name")))
            if config is None:
                continue
            prefix = str(mapping(source).get("prefix") or "")
            for key, value in mapping(config.body.get("data")).items():
                variable = prefix + str(key)
                registry_url = registry_url or variable == ENV_REDIS_URL
                if keeps_variable(variable, labels):
                    env[variable] = str(value)
        told_variables = set(settings_variables(labels))
        setting_variables = {env_name(n) for n in FIELDS} | told_variables
        for entry in (mapping(e) for e in sequence(spec.get("env"))):
            variable = str(entry.get("name", ""))
            registry_url = registry_url or variable == ENV_REDIS_URL
            if not keeps_variable(variable, labels):
                continue  # only settings are read; other variables may hold secrets
            if "value" in entry:
                env[variable] = str(entry["value"])
                continue
            ref = mapping(mapping(entry.get("valueFrom")).get("configMapKeyRef"))
            value = config_value(ref) if ref else None
            if value is not None:
                env[variable] = value
            elif variable in setting_variables:  # a secret's value is never read; a setting's is missed
                self.notes.append(f"container {name} variable {variable} comes from valueFrom (not read)")
        settings = Settings().with_overrides(
            {"server_mode": "own", "server_env": labels.get("stickyws.server-env", "")}
        )
        told = settings.told_env() if labels.get("stickyws.server-mode") == "own" else {}
        for setting, info in FIELDS.items():
            if info.group in SERVER_SIDE_GROUPS:
                self.place(setting, f"container {name} env {told.get(setting) or env_name(setting)}")
        if env_name("deregistration_propagation_s") not in env and "deregistration_propagation_s" in FIELDS:
            # Not in any manifest: how long the controller's deregistration takes to reach the load balancer.
            self.found["deregistration_propagation_s"] = Observation(
                "deregistration_propagation_s",
                str(Settings()["deregistration_propagation_s"]),
                "not in the manifests: the model's estimate of how long the deregistration takes to reach the "
                "load balancer (pass --assume deregistration_propagation_s=N)",
                aws_default=True,
            )
        return Container(name=name, stop_timeout_s=None, environment=env, labels=labels, registry_url=registry_url)

    # -- the Kubernetes group ------------------------------------------------------------------------

    def kubernetes(self) -> None:
        d, workload = self.d, self.d.workload
        self.put("k8s_namespace", workload.namespace, f"{workload.label} metadata.namespace", None)
        self.put("k8s_api", d.api, "Ingress or HTTPRoute sending traffic to the Service", None)
        hpa = d.autoscaler
        spec_replicas = workload.spec.get("replicas")
        if spec_replicas is not None:
            replicas_text, where = str(spec_replicas), f"{workload.label} spec.replicas"
        elif hpa is not None:
            replicas_text = str(hpa.spec.get("minReplicas", DEFAULT_HPA_MIN_REPLICAS))
            where = f"{workload.label} spec.replicas unset: HorizontalPodAutoscaler {hpa.name} minReplicas"
        else:
            replicas_text, where = str(DEFAULT_REPLICAS), f"{workload.label} spec.replicas unset: Kubernetes default"
        self.found["replicas"] = Observation("replicas", replicas_text, where, aws_default="default" in where)
        self.place("replicas", f"{workload.label}: spec.replicas")
        replicas = int(replicas_text) if replicas_text.isdigit() else DEFAULT_REPLICAS
        if hpa is not None:
            self.put(
                "min_replicas",
                None if hpa.spec.get("minReplicas") is None else str(hpa.spec["minReplicas"]),
                f"HorizontalPodAutoscaler {hpa.name} spec.minReplicas",
                str(DEFAULT_HPA_MIN_REPLICAS),
                "Kubernetes",
            )
            self.put(
                "max_replicas",
                str(hpa.spec.get("maxReplicas")),
                f"HorizontalPodAutoscaler {hpa.name} spec.maxReplicas",
                None,
            )
            self.place("min_replicas", f"HorizontalPodAutoscaler {hpa.name}: spec.minReplicas")
            self.place("max_replicas", f"HorizontalPodAutoscaler {hpa.name}: spec.maxReplicas")
        else:
            fixed = f"no HorizontalPodAutoscaler scales {workload.label}: fixed at spec.replicas"
            self.put("min_replicas", replicas_text, fixed, None)
            self.put("max_replicas", replicas_text, fixed, None)
        grace = d.pod_spec.get("terminationGracePeriodSeconds")
        self.put(
            "termination_grace_period_s",
            None if grace is None else str(grace),
            f"{workload.label} spec.template.spec.terminationGracePeriodSeconds",
            str(DEFAULT_GRACE_PERIOD_S),
            "Kubernetes",
        )
        self.place("termination_grace_period_s", f"{workload.label}: spec.template.spec.terminationGracePeriodSeconds")
        if d.container is not None:
            name = d.container.get("name", "?")
            seconds, how = pre_stop_seconds(d.container)
            if seconds is not None:
                self.put("pre_stop_delay_s", str(int(seconds)), f"container {name} {how}", None)
            elif "drain-self" not in how:
                self.notes.append(f"container {name}: {how}; pre_stop_delay_s not read")
            if "drain-self" in how:
                self.place("pre_stop_delay_s", f"container {name} env {env_name('pre_stop_delay_s')}")
            elif how == "no preStop hook":
                self.place("pre_stop_delay_s", f"container {name}: lifecycle.preStop (add sleep: seconds: N)")
            else:
                self.place("pre_stop_delay_s", f"container {name}: lifecycle.preStop")
        self.readiness_gate()
        self.disruption_budget(replicas)
        self.rollout(replicas)

    def readiness_gate(self) -> None:
        d = self.d
        gated = [p.name for p in d.pods if any(
            str(mapping(g).get("conditionType", "")).startswith(READINESS_GATE_PREFIX)
            for g in sequence(p.spec.get("readinessGates"))
        )]  # fmt: skip
        namespace = d.namespace
        ns_name = d.workload.namespace or (namespace.name if namespace is not None else None)
        owner = f"Namespace {ns_name}" if ns_name else "the workload's Namespace"
        place = f"{owner}: label {READINESS_GATE_LABEL}=enabled"
        self.place("readiness_gate", place)
        if namespace is not None:
            value = namespace.labels.get(READINESS_GATE_LABEL)
            where = f"Namespace {namespace.name} label {READINESS_GATE_LABEL}"
            text = "true" if value == "enabled" else "false"
            self.put("readiness_gate", text, where if value is not None else f"{where} absent", None)
        elif gated:
            self.put("readiness_gate", "true", f"pod {gated[0]} readinessGates {READINESS_GATE_PREFIX}/...", None)
        else:
            self.put(
                "readiness_gate",
                "false",
                f"no Namespace{' ' + ns_name if ns_name else ''} with label {READINESS_GATE_LABEL}=enabled in the "
                "manifests (add it to the files audited, or pass --assume readiness_gate=true)",
                None,
            )

    def disruption_budget(self, replicas: int) -> None:
        pdb = self.d.pod_disruption_budget
        if pdb is None:
            self.put(
                "pdb_max_unavailable",
                str(replicas),
                f"no PodDisruptionBudget selects the pods of {self.d.workload.label}: a node drain may evict all "
                f"{replicas}",
                None,
            )
            self.place("pdb_max_unavailable", f"a PodDisruptionBudget selecting the pods of {self.d.workload.label}")
            return
        self.place("pdb_max_unavailable", f"PodDisruptionBudget {pdb.name}: spec.maxUnavailable")
        if pdb.spec.get("maxUnavailable") is not None:
            raw = pdb.spec["maxUnavailable"]
            pods = _int_or_percent(raw, replicas, round_up=True)
            where = f"PodDisruptionBudget {pdb.name} spec.maxUnavailable={raw}"
        elif pdb.spec.get("minAvailable") is not None:
            raw = pdb.spec["minAvailable"]
            available = _int_or_percent(raw, replicas, round_up=True)
            pods = None if available is None else max(replicas - available, 0)
            where = f"PodDisruptionBudget {pdb.name} spec.minAvailable={raw} of {replicas} replicas"
        else:
            pods, where = replicas, f"PodDisruptionBudget {pdb.name} sets neither maxUnavailable nor minAvailable"
        if pods is None:
            self.notes.append(f"{where} does not parse; pdb_max_unavailable not read")
            return
        self.put("pdb_max_unavailable", str(pods), where, None)

    def rollout(self, replicas: int) -> None:
        workload = self.d.workload
        if workload.kind == "StatefulSet":
            strategy = mapping(workload.spec.get("updateStrategy"))
            rolling = mapping(strategy.get("rollingUpdate"))
            raw = rolling.get("maxUnavailable", 1)
            where = f"StatefulSet {workload.name} updateStrategy (one pod at a time, no surge)"
            self.put("max_surge_percent", "0", where, None)
            value = _as_percent(raw, replicas, round_up=True)
            self.put("max_unavailable_percent", None if value is None else str(value), where, None)
            return
        strategy = mapping(workload.spec.get("strategy"))
        where = f"{workload.label} spec.strategy"
        if strategy.get("type") == "Recreate":
            self.put("max_surge_percent", "0", f"{where}.type=Recreate", None)
            self.put("max_unavailable_percent", "100", f"{where}.type=Recreate (every pod stops first)", None)
        else:
            rolling = mapping(strategy.get("rollingUpdate"))
            for name, key, round_up in (
                ("max_surge_percent", "maxSurge", False),
                ("max_unavailable_percent", "maxUnavailable", True),
            ):
                raw = rolling.get(key)
                value = _as_percent(raw if raw is not None else DEFAULT_ROLLING_PERCENT, replicas, round_up=round_up)
                text = None if value is None else str(value)
                if raw is None:
                    self.put(name, None, f"{where}.rollingUpdate.{key}", text, "Kubernetes")
                else:
                    self.put(name, text, f"{where}.rollingUpdate.{key}={raw}", None)
        for name, key in (("max_surge_percent", "maxSurge"), ("max_unavailable_percent", "maxUnavailable")):
            self.place(name, f"{workload.label}: spec.strategy.rollingUpdate.{key}")
