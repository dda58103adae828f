"""The deployment checks of a Kubernetes audit: those only manifests raise, and the AWS ones as they apply here.

:func:`kubernetes_checks` builds the list :func:`stickyws.audit.checks.audit` runs for one
:class:`~stickyws.audit.k8s.objects.KubernetesDeployment`, in report order:

* every check of :data:`stickyws.audit.checks.CHECKS`, under its own id: the load balancer attribute checks
  (header dropping, access logs, target optimizer) and ``app-settings-match`` run with fixes that name
  the annotation or resource to change; the ECS and listener-rule checks are skipped with the reason
  (the controller writes the listeners and rules; Kubernetes has no ECS service);
* then the checks of :data:`KUBERNETES_CHECKS`: the controller handles the Ingress or Gateway, one
  load balancer sends traffic to the Service, the Service targets the server's port.
"""

from __future__ import annotations

from collections.abc import Callable

from stickyws.audit.checks import CHECKS, Context, DeploymentCheck, Outcome, Status, variable_of
from stickyws.audit.k8s.manifests import Manifest, mapping, sequence
from stickyws.audit.k8s.mapping import LB_ATTRIBUTES_ANNOTATION, TG_ATTRIBUTES_ANNOTATION, Places
from stickyws.audit.k8s.objects import (
    ALB_GATEWAY_CONTROLLER,
    ALB_INGRESS_CLASS,
    ALB_INGRESS_CONTROLLER,
    INGRESS_CLASS_ANNOTATION,
    KubernetesDeployment,
)
from stickyws.settings import FIELDS, Scope, render_value

#: Why the listener-rule checks (and any other check of what the controller makes) do not apply to manifests.
CONTROLLER_WRITES_RULES = (
    "the AWS Load Balancer Controller writes the listeners and rules from the manifests; audit the load "
    "balancer it made with --load-balancer-arn ARN to check them"
)
#: Why the ECS checks do not apply to manifests.
NO_ECS_SERVICE = "an ECS check: a Kubernetes workload has no ECS service (the kubernetes rules judge its rollout)"
#: The deployment checks that read listener rules the manifests do not hold.
LISTENER_CHECKS = ("upgrade-rule", "tls-policy", "weighted-forward-not-sticky")
#: The deployment checks whose fix names a load balancer attribute: run as they are, the fix pointed at the
#: manifests (the attribute's place is that of the setting named).
ATTRIBUTE_CHECKS = {
    "invalid-header-dropping": ("drop_invalid_header_fields", "routing.http.drop_invalid_header_fields.enabled=true"),
    "access-logs": ("idle_timeout_s", "access_logs.s3.enabled=true and access_logs.s3.bucket=BUCKET"),
}
#: The deployment checks that run unchanged.
AS_IS: tuple[str, ...] = ()

K8S = Scope.KUBERNETES


def kubernetes_checks(deployment: KubernetesDeployment, places: Places) -> list[DeploymentCheck]:
    """The deployment checks of a Kubernetes audit of ``deployment``, in report order (see the module docstring)."""
    found: list[DeploymentCheck] = []
    for check in CHECKS.values():
        if check.id in AS_IS:
            found.append(check)
        elif check.id in ATTRIBUTE_CHECKS:
            found.append(_pointed(check, places, *ATTRIBUTE_CHECKS[check.id]))
        elif check.id == "target-optimizer-off":
            found.append(_target_optimizer(check, places))
        elif check.id == "registry-encryption-and-auth":
            found.append(_registry(check))
        elif check.id == "app-settings-match":
            found.append(_app_settings(check))
        else:
            ecs = Scope.SERVICE in check.scopes and check.id not in LISTENER_CHECKS
            found.append(_skipped(check, NO_ECS_SERVICE if ecs else CONTROLLER_WRITES_RULES))
    for make in KUBERNETES_CHECKS:
        found.append(make(deployment))
    return found


def _skipped(check: DeploymentCheck, reason: str) -> DeploymentCheck:
    def run(ctx: Context) -> Outcome:
        return Status.SKIP, reason, ""

    return DeploymentCheck(check.id, check.summary, run, frozenset())


def _pointed(check: DeploymentCheck, places: Places, setting: str, what: str) -> DeploymentCheck:
    """``check`` with a fix that says where in the manifests to set ``what`` (at the place of ``setting``)."""

    def run(ctx: Context) -> Outcome:
        status, found, fix = check.run(ctx)
        if not fix:
            return status, found, fix
        place = places.where(setting) or "the Ingress or LoadBalancerConfiguration: key"
        return status, found, f"set {what} in {place.rsplit(':', 1)[0]}"

    return DeploymentCheck(check.id, check.summary, run, check.scopes)


def _target_optimizer(check: DeploymentCheck, places: Places) -> DeploymentCheck:
    """``target-optimizer-off``, its fix naming the TargetGroupConfiguration that sets ``targetControlPort``."""

    def run(ctx: Context) -> Outcome:
        status, found, fix = check.run(ctx)
        if not fix:
            return status, found, fix
        owner = (places.where("k8s_target_type") or "the TargetGroupConfiguration.targetType").rsplit(".", 1)[0]
        return status, found, f"remove targetControlPort from {owner} (fixed at creation: the target group is replaced)"

    return DeploymentCheck(check.id, check.summary, run, check.scopes)


def _app_settings(check: DeploymentCheck) -> DeploymentCheck:
    """``app-settings-match``, comparing also the Kubernetes settings the server reads (the reference server's
    ``drain-self`` times its drain by ``STICKYWS_TERMINATION_GRACE_PERIOD_S``) with the pod spec's."""

    def run(ctx: Context) -> Outcome:
        status, found, fix = check.run(ctx)
        compared = sorted(n for n in set(ctx.observed) & ctx.from_container if FIELDS[n].group == "kubernetes")
        mismatched = [
            f"{n}: manifests {render_value(ctx.infra_settings[n])} ({ctx.observed[n].where}), container "
            f"{variable_of(ctx.app_settings, n)}={render_value(ctx.app_settings[n])}"
            for n in compared
            if ctx.infra_settings[n] != ctx.app_settings[n]
        ]
        if not mismatched:
            return status, found, fix
        shown = "; ".join(mismatched) if status is Status.PASS else f"{found}; {'; '.join(mismatched)}"
        return (
            Status.FAIL,
            shown,
            "render the container's environment and the manifests from one Settings object (stickyws k8s render "
            "does), or set the variable to the manifests' value",
        )

    return DeploymentCheck(check.id, check.summary, run, check.scopes)


def _registry(check: DeploymentCheck) -> DeploymentCheck:
    """``registry-encryption-and-auth``: manifests name the registry (``REDIS_URL``) but never show its cache."""

    def run(ctx: Context) -> Outcome:
        if ctx.view.registry is not None:
            return check.run(ctx)
        return (
            Status.WARN,
            "the registry is outside the manifests (the container is given REDIS_URL)",
            "check the cache's TLS, encryption at rest and authentication by hand, or audit it with "
            "--load-balancer-arn ARN --registry-id ID",
        )

    return DeploymentCheck(check.id, check.summary, run, check.scopes)


# -- checks only manifests raise ------------------------------------------------------------------------

CheckMaker = Callable[[KubernetesDeployment], DeploymentCheck]


def _alb_controller(d: KubernetesDeployment) -> DeploymentCheck:
    summary = "The AWS Load Balancer Controller handles the Ingress or Gateway in front of the server."

    def run(ctx: Context) -> Outcome:
        if d.ingress is not None:
            return _ingress_controller(d, d.ingress)
        if d.routes:
            return _gateway_controller(d)
        return Status.SKIP, "no Ingress or HTTPRoute sends traffic to the Service", ""

    return DeploymentCheck("k8s-alb-controller", summary, run, frozenset({K8S, Scope.LOAD_BALANCER}))


def _ingress_controller(d: KubernetesDeployment, ingress: Manifest) -> Outcome:
    name = ingress.spec.get("ingressClassName") or ingress.annotations.get(INGRESS_CLASS_ANNOTATION)
    fix = (
        f"set spec.ingressClassName of Ingress {ingress.name} to an IngressClass with controller "
        f"{ALB_INGRESS_CONTROLLER}"
    )
    if d.ingress_class is not None:
        controller = d.ingress_class.spec.get("controller")
        if controller == ALB_INGRESS_CONTROLLER:
            return Status.PASS, f"IngressClass {d.ingress_class.name}: controller {controller}", ""
        return (
            Status.FAIL,
            f"IngressClass {d.ingress_class.name} has controller {controller}: the alb.ingress.kubernetes.io "
            "annotations are ignored",
            fix,
        )
    if name == ALB_INGRESS_CLASS:
        return Status.PASS, f"Ingress {ingress.name} class {name} (the controller's usual IngressClass)", ""
    if name is None:
        return (
            Status.WARN,
            f"Ingress {ingress.name} names no IngressClass: the cluster's default class decides who reads its "
            "annotations",
            fix,
        )
    return (
        Status.WARN,
        f"Ingress {ingress.name} names IngressClass {name}, which is not in the manifests: the audit assumes the "
        "AWS Load Balancer Controller handles it",
        "add the IngressClass to the files audited",
    )


def _gateway_controller(d: KubernetesDeployment) -> Outcome:
    if d.gateway is None:
        return Status.WARN, "the HTTPRoute's Gateway is not in the manifests", "add the Gateway to the files audited"
    class_name = d.gateway.spec.get("gatewayClassName")
    if d.gateway_class is None:
        return (
            Status.WARN,
            f"Gateway {d.gateway.name} names GatewayClass {class_name}, which is not in the manifests: the audit "
            "assumes the AWS Load Balancer Controller handles it",
            "add the GatewayClass to the files audited",
        )
    controller = d.gateway_class.spec.get("controllerName")
    if controller == ALB_GATEWAY_CONTROLLER:
        return Status.PASS, f"GatewayClass {d.gateway_class.name}: controllerName {controller}", ""
    return (
        Status.FAIL,
        f"GatewayClass {d.gateway_class.name} has controllerName {controller}: no Application Load Balancer reads "
        "the gateway.k8s.aws configurations",
        f"use a GatewayClass with controllerName {ALB_GATEWAY_CONTROLLER}",
    )


def _one_load_balancer(d: KubernetesDeployment) -> DeploymentCheck:
    summary = "The Ingresses and routes that reach the WebSocket Service agree on the load balancer's settings."

    def run(ctx: Context) -> Outcome:
        if len(d.ingresses) + len(d.routes) <= 1:
            only = d.ingress.label if d.ingress else d.routes[0].manifest.label if d.routes else "none"
            return Status.PASS, f"one: {only}", ""
        names = [i.label for i in d.ingresses] + [r.manifest.label for r in d.routes]
        first = names[0]
        if d.ingresses and d.routes:
            return (
                Status.WARN,
                f"both an Ingress and an HTTPRoute reach the Service ({', '.join(names)}): two load balancers; the "
                f"audit judged {first}",
                "audit each load balancer (--load-balancer-arn), or send the WebSockets through one of them",
            )
        differ = []
        for key in (LB_ATTRIBUTES_ANNOTATION, TG_ATTRIBUTES_ANNOTATION):
            values = {i.name: i.annotations.get(key, "") for i in d.ingresses}
            if len(set(values.values())) > 1:
                shown = "; ".join(f"{n}: {v or 'unset'}" for n, v in values.items())
                differ.append(f"{key} differs ({shown})")
        groups = {i.annotations.get("alb.ingress.kubernetes.io/group.name") for i in d.ingresses}
        shared = len(groups) == 1 and None not in groups
        kind = "one IngressGroup (one load balancer)" if shared else "separate load balancers"
        if differ:
            return (
                Status.FAIL,
                f"{len(names)} Ingresses reach the Service, {kind}: {'; '.join(differ)}; the audit judged {first}",
                "give every Ingress in front of the WebSocket Service the same load balancer and target group "
                "annotations (an IngressGroup takes load-balancer-attributes from one Ingress only)",
            )
        return Status.PASS, f"{len(names)} Ingresses reach the Service, {kind}, with the same attributes", ""

    return DeploymentCheck("k8s-one-load-balancer", summary, run, frozenset({K8S, Scope.LOAD_BALANCER}))


def _service_targets_server(d: KubernetesDeployment) -> DeploymentCheck:
    summary = "The Service targets the port the server container listens on."

    def run(ctx: Context) -> Outcome:
        service, container = d.service, d.container
        if service is None or container is None:
            return Status.SKIP, "no Service or no container read", ""
        ports = [mapping(p) for p in sequence(service.spec.get("ports"))]
        targets = [p.get("targetPort", p.get("port")) for p in ports]
        declared = {mapping(p).get("name"): mapping(p).get("containerPort") for p in sequence(container.get("ports"))}
        resolved = [declared.get(t, t) for t in targets]  # a named targetPort is the container port of that name
        numbers = {int(n) for n in resolved if isinstance(n, int) or (isinstance(n, str) and n.isdigit())}
        port = ctx.settings["port"]
        name = container.get("name", "?")
        if port in numbers:
            return Status.PASS, f"Service {service.name} targets {port}, the server's port (container {name})", ""
        ours: set[int] = numbers & {p for p in declared.values() if isinstance(p, int)}
        if "port" not in ctx.from_container and ours:
            shown = ", ".join(map(str, sorted(ours)))
            return (
                Status.PASS,
                f"Service {service.name} targets {shown}, a containerPort of container {name} (its server is not "
                "told its port)",
                "",
            )
        shown = ", ".join(str(t) for t in targets) or "no port"
        return (
            Status.FAIL,
            f"Service {service.name} targets {shown}; container {name} listens on port={port}",
            f"set the Service's targetPort to {port} (or the server's port setting to the port the Service targets)",
        )

    return DeploymentCheck("k8s-service-targets-server", summary, run, frozenset({K8S, Scope.SERVER}))


#: The checks only Kubernetes manifests raise, in report order.
KUBERNETES_CHECKS: tuple[CheckMaker, ...] = (_alb_controller, _one_load_balancer, _service_targets_server)
#: Their ids and summaries, for the docs.
KUBERNETES_CHECK_IDS = ("k8s-alb-controller", "k8s-one-load-balancer", "k8s-service-targets-server")
