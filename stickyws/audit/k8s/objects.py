"""Find the WebSocket deployment among Kubernetes objects: workload, Service, Ingress or Gateway API, and the rest.

:func:`find_deployment` picks, in this order:

1. the Ingresses (handled by the AWS Load Balancer Controller or not) and HTTPRoutes and the Services
   their backends name;
2. the **Service**: one those backends name that selects a workload, else one that selects a workload;
3. the **workload** (Deployment or StatefulSet) that Service selects; without a Service, the one whose
   containers carry ``STICKYWS_*`` variables or ``stickyws.*`` labels, else the only one;
4. the **container** whose port the Service targets (``targetPort``, by number or by name), else the one
   that carries stickyws settings, else the first;
5. the Ingresses and routes that reach that Service, their IngressClass and IngressClassParams, or the
   Gateway, GatewayClass and the ``gateway.k8s.aws`` configurations; the PodDisruptionBudget and the
   HorizontalPodAutoscaler of the workload; its Namespace; pods of the workload (``kubectl get pods``).

Whatever had to be chosen among several, or could not be found, is said in :attr:`KubernetesDeployment.notes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stickyws.audit.k8s.manifests import Manifest, ManifestError, mapping, sequence
from stickyws.settings import LABEL_SERVER_ENV, LABEL_SERVER_MODE

WORKLOAD_KINDS = ("Deployment", "StatefulSet")
#: ``spec.controller`` of the AWS Load Balancer Controller's IngressClass.
ALB_INGRESS_CONTROLLER = "ingress.k8s.aws/alb"
#: The legacy ``kubernetes.io/ingress.class`` value (and the usual IngressClass name) of that controller.
ALB_INGRESS_CLASS = "alb"
#: ``spec.controllerName`` of the controller's GatewayClass for Application Load Balancers.
ALB_GATEWAY_CONTROLLER = "gateway.k8s.aws/alb"
GATEWAY_CONFIG_GROUP = "gateway.k8s.aws"
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"


@dataclass(frozen=True)
class KubernetesDeployment:
    """The objects of one WebSocket deployment on Kubernetes; any but the workload may be missing.

    ``container`` is the server container's spec (a mapping as the manifest gives it); ``ingresses`` and
    ``routes`` are those that send traffic to ``service``; ``gateway_configs`` the LoadBalancerConfigurations
    of the Gateway and of its GatewayClass (in that order, ``None`` where there is none);
    ``target_group_configs`` the Service's TargetGroupConfiguration and the Gateway's default one.
    """

    source: str
    workload: Manifest
    container: Mapping[str, Any] | None
    service: Manifest | None = None
    ingresses: tuple[Manifest, ...] = ()
    ingress_class: Manifest | None = None
    ingress_class_params: Manifest | None = None
    routes: tuple[HttpRoute, ...] = ()
    gateway: Manifest | None = None
    gateway_class: Manifest | None = None
    gateway_configs: tuple[Manifest | None, Manifest | None] = (None, None)
    target_group_configs: tuple[Manifest | None, Manifest | None] = (None, None)
    pod_disruption_budget: Manifest | None = None
    autoscaler: Manifest | None = None
    namespace: Manifest | None = None
    pods: tuple[Manifest, ...] = ()
    config_maps: tuple[Manifest, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ingress(self) -> Manifest | None:
        """The Ingress the audit reads the load balancer from (the first that reaches the Service)."""
        return self.ingresses[0] if self.ingresses else None

    @property
    def api(self) -> str | None:
        """``ingress`` or ``gateway``: how the load balancer is declared (``None``: neither was found)."""
        if self.ingresses:
            return "ingress"
        return "gateway" if self.routes else None

    @property
    def pod_template(self) -> Mapping[str, Any]:
        """The workload's ``spec.template``."""
        return mapping(self.workload.spec.get("template"))

    @property
    def pod_spec(self) -> Mapping[str, Any]:
        """The workload's ``spec.template.spec``."""
        return mapping(self.pod_template.get("spec"))

    @property
    def server_labels(self) -> dict[str, str]:
        """The ``stickyws.server-mode``/``stickyws.server-env`` keys, from the pod template's annotations or
        labels, else the workload's (Kubernetes label values cannot hold ``server-env``'s ``=`` and ``,``, so
        annotations are read first)."""
        template_meta = mapping(self.pod_template.get("metadata"))
        places = [
            mapping(template_meta.get("annotations")),
            mapping(template_meta.get("labels")),
            self.workload.annotations,
            self.workload.labels,
        ]
        found: dict[str, str] = {}
        for key in (LABEL_SERVER_MODE, LABEL_SERVER_ENV):
            for place in places:
                if key in place:
                    found[key] = str(place[key])
                    break
        return found


@dataclass(frozen=True)
class HttpRoute:
    """An HTTPRoute that sends traffic to the Service, with the Gateway names of its ``parentRefs``."""

    manifest: Manifest
    gateways: tuple[str, ...]


def find_deployment(objects: Sequence[Manifest], source: str) -> KubernetesDeployment:
    """The WebSocket deployment among ``objects`` (see the module docstring); raises :class:`ManifestError`
    when they hold no Deployment or StatefulSet."""
    notes: list[str] = []
    workloads = [o for o in objects if o.kind in WORKLOAD_KINDS]
    if not workloads:
        kinds = ", ".join(sorted({o.kind for o in objects}))
        raise ManifestError(
            f"{source} holds no workload (Deployment or StatefulSet), only {kinds}; pass the manifests of the "
            "WebSocket server's workload too"
        )
    services = [o for o in objects if o.kind == "Service"]
    ingresses = [o for o in objects if o.kind == "Ingress"]
    routes = [o for o in objects if o.kind == "HTTPRoute"]
    backends = [(i, name) for i in ingresses for name in _ingress_backends(i)]
    backends += [(r, name) for r in routes for name in _route_backends(r)]

    service, workload = _service_and_workload(services, workloads, backends, notes)
    container = _server_container(workload, service, notes)
    chosen_ingresses = tuple(i for i, name in backends if i.kind == "Ingress" and _names(i, name, service))
    chosen_routes = tuple(
        HttpRoute(r, _route_gateways(r)) for r, name in backends if r.kind == "HTTPRoute" and _names(r, name, service)
    )
    chosen_ingresses = tuple(dict.fromkeys(chosen_ingresses))
    chosen_routes = tuple({r.manifest.name: r for r in chosen_routes}.values())
    if service is not None and not chosen_ingresses and not chosen_routes:
        notes.append(f"no Ingress or HTTPRoute sends traffic to Service {service.name} (load balancer not read)")

    ingress_class = params = None
    if chosen_ingresses:
        ingress_class, params = _ingress_class(chosen_ingresses[0], objects, notes)
    gateway = gateway_class = None
    gateway_configs: tuple[Manifest | None, Manifest | None] = (None, None)
    target_group_configs: tuple[Manifest | None, Manifest | None] = (None, None)
    if chosen_routes and not chosen_ingresses:
        gateway, gateway_class, gateway_configs = _gateway(chosen_routes[0], objects, notes)
        target_group_configs = _target_group_configs(service, gateway_configs, objects)

    pdbs = [o for o in objects if o.kind == "PodDisruptionBudget" and _selects(o, workload)]
    hpas = [o for o in objects if o.kind == "HorizontalPodAutoscaler" and _scales(o, workload)]
    namespaces = [o for o in objects if o.kind == "Namespace" and o.name == workload.namespace]
    if not namespaces and workload.namespace is None:
        namespaces = [o for o in objects if o.kind == "Namespace"][:1]
    pods = tuple(o for o in objects if o.kind == "Pod" and _matches(o.labels, workload))
    for what, found in (("PodDisruptionBudgets", pdbs), ("HorizontalPodAutoscalers", hpas)):
        if len(found) > 1:
            notes.append(f"{len(found)} {what} select {workload.label}; reading {found[0].name}")
    return KubernetesDeployment(
        source=source,
        workload=workload,
        container=container,
        service=service,
        ingresses=chosen_ingresses,
        ingress_class=ingress_class,
        ingress_class_params=params,
        routes=chosen_routes,
        gateway=gateway,
        gateway_class=gateway_class,
        gateway_configs=gateway_configs,
        target_group_configs=target_group_configs,
        pod_disruption_budget=pdbs[0] if pdbs else None,
        autoscaler=hpas[0] if hpas else None,
        namespace=namespaces[0] if namespaces else None,
        pods=pods,
        config_maps=tuple(o for o in objects if o.kind == "ConfigMap" and o.same_namespace(workload)),
        notes=tuple(notes),
    )


# -- which objects belong together ----------------------------------------------------------------


def _names(route: Manifest, name: str, service: Manifest | None) -> bool:
    return service is not None and name == service.name and route.same_namespace(service)


def _ingress_backends(ingress: Manifest) -> list[str]:
    """Names of the Services an Ingress sends traffic to (``defaultBackend`` and every path's backend)."""
    backends = [mapping(ingress.spec.get("defaultBackend"))]
    for rule in sequence(ingress.spec.get("rules")):
        for path in sequence(mapping(mapping(rule).get("http")).get("paths")):
            backends.append(mapping(mapping(path).get("backend")))
    names = [str(mapping(b.get("service")).get("name") or b.get("serviceName") or "") for b in backends]
    return [n for n in dict.fromkeys(names) if n]


def _route_backends(route: Manifest) -> list[str]:
    names = [
        str(mapping(ref).get("name", ""))
        for rule in sequence(route.spec.get("rules"))
        for ref in sequence(mapping(rule).get("backendRefs"))
        if mapping(ref).get("kind", "Service") == "Service"
    ]
    return [n for n in dict.fromkeys(names) if n]


def _route_gateways(route: Manifest) -> tuple[str, ...]:
    refs = [mapping(r) for r in sequence(route.spec.get("parentRefs"))]
    return tuple(str(r.get("name")) for r in refs if r.get("kind", "Gateway") == "Gateway" and r.get("name"))


def _pod_labels(workload: Manifest) -> Mapping[str, Any]:
    return mapping(mapping(mapping(workload.spec.get("template")).get("metadata")).get("labels"))


def _matches(labels: Mapping[str, Any], workload: Manifest) -> bool:
    wanted = mapping(mapping(workload.spec.get("selector")).get("matchLabels")) or _pod_labels(workload)
    return bool(wanted) and all(str(labels.get(k)) == str(v) for k, v in wanted.items())


def _selector_matches(selector: Mapping[str, Any], workload: Manifest) -> bool:
    labels = _pod_labels(workload)
    return bool(selector) and all(str(labels.get(k)) == str(v) for k, v in selector.items())


def _selects(pdb: Manifest, workload: Manifest) -> bool:
    selector = mapping(mapping(pdb.spec.get("selector")).get("matchLabels"))
    return pdb.same_namespace(workload) and _selector_matches(selector, workload)


def _scales(hpa: Manifest, workload: Manifest) -> bool:
    target = mapping(hpa.spec.get("scaleTargetRef"))
    return hpa.same_namespace(workload) and target.get("kind") == workload.kind and target.get("name") == workload.name


def _service_and_workload(
    services: list[Manifest],
    workloads: list[Manifest],
    backends: list[tuple[Manifest, str]],
    notes: list[str],
) -> tuple[Manifest | None, Manifest]:
    def selected(service: Manifest) -> list[Manifest]:
        selector = mapping(service.spec.get("selector"))
        return [w for w in workloads if w.same_namespace(service) and _selector_matches(selector, w)]

    named = {name for _, name in backends}
    candidates = [s for s in services if s.name in named and selected(s)]
    candidates += [s for s in services if s not in candidates and selected(s)]
    if candidates:
        service = _prefer_stickyws(candidates, lambda s: selected(s))
        if len(candidates) > 1:
            notes.append(
                f"{len(candidates)} Services select a workload; reading Service {service.name}"
                + (" (an Ingress or HTTPRoute sends traffic to it)" if service.name in named else "")
            )
        chosen = selected(service)
        workload = _prefer_stickyws(chosen, lambda w: [w])
        if len(chosen) > 1:
            notes.append(f"Service {service.name} selects {len(chosen)} workloads; reading {workload.label}")
        return service, workload
    workload = _prefer_stickyws(workloads, lambda w: [w])
    if len(workloads) > 1:
        notes.append(f"{len(workloads)} workloads and no Service selecting one; reading {workload.label}")
    notes.append(f"no Service selects {workload.label} (load balancer not read)")
    return None, workload


def _prefer_stickyws(candidates: list[Manifest], workloads_of: Callable[[Manifest], list[Manifest]]) -> Manifest:
    """The first candidate whose workload carries stickyws settings, else the first."""
    for candidate in candidates:
        if any(_carries_settings(c) for w in workloads_of(candidate) for c in _containers(w)):
            return candidate
    return candidates[0]


def _containers(workload: Manifest) -> list[Mapping[str, Any]]:
    spec = mapping(mapping(workload.spec.get("template")).get("spec"))
    return [mapping(c) for c in sequence(spec.get("containers"))]


def _carries_settings(container: Mapping[str, Any]) -> bool:
    return any(str(mapping(e).get("name", "")).startswith("STICKYWS_") for e in sequence(container.get("env")))


def _server_container(workload: Manifest, service: Manifest | None, notes: list[str]) -> Mapping[str, Any] | None:
    containers = _containers(workload)
    if not containers:
        notes.append(f"{workload.label} has no containers (server not read)")
        return None
    if len(containers) == 1:
        return containers[0]
    names = ", ".join(str(c.get("name", "?")) for c in containers)
    if service is not None:
        targets = _target_ports(service)
        for container in containers:
            ports = [mapping(p) for p in sequence(container.get("ports"))]
            if any(p.get("containerPort") in targets or p.get("name") in targets for p in ports):
                notes.append(
                    f"{workload.label} has containers {names}; reading {container.get('name')}, whose port "
                    f"Service {service.name} targets"
                )
                return container
    chosen = next((c for c in containers if _carries_settings(c)), containers[0])
    notes.append(
        f"{workload.label} has containers {names} and no port of theirs is the Service's target; reading "
        f"{chosen.get('name')}"
    )
    return chosen


def _target_ports(service: Manifest) -> set[Any]:
    """The container ports (numbers or names) the Service targets; ``targetPort`` defaults to ``port``."""
    found: set[Any] = set()
    for port in sequence(service.spec.get("ports")):
        entry = mapping(port)
        target = entry.get("targetPort", entry.get("port"))
        found.add(int(target) if isinstance(target, str) and target.isdigit() else target)
    return found


def _ingress_class(
    ingress: Manifest, objects: Iterable[Manifest], notes: list[str]
) -> tuple[Manifest | None, Manifest | None]:
    """The Ingress's IngressClass (by ``ingressClassName``, else the one marked default) and its parameters."""
    classes = [o for o in objects if o.kind == "IngressClass"]
    name = ingress.spec.get("ingressClassName") or ingress.annotations.get(INGRESS_CLASS_ANNOTATION)
    chosen = next((c for c in classes if c.name == name), None)
    if chosen is None and name is None:
        chosen = next(
            (c for c in classes if c.annotations.get("ingressclass.kubernetes.io/is-default-class") == "true"), None
        )
    if chosen is None:
        return None, None
    ref = mapping(chosen.spec.get("parameters"))
    if ref.get("kind") != "IngressClassParams":
        return chosen, None
    params = next((o for o in objects if o.kind == "IngressClassParams" and o.name == ref.get("name")), None)
    if params is None:
        notes.append(f"IngressClass {chosen.name} names IngressClassParams {ref.get('name')}, not in the manifests")
    return chosen, params


def _gateway(
    route: HttpRoute, objects: Sequence[Manifest], notes: list[str]
) -> tuple[Manifest | None, Manifest | None, tuple[Manifest | None, Manifest | None]]:
    """The route's Gateway, its GatewayClass, and the LoadBalancerConfigurations of both."""
    gateway = next(
        (o for o in objects if o.kind == "Gateway" and o.name in route.gateways and o.same_namespace(route.manifest)),
        None,
    )
    if gateway is None:
        notes.append(
            f"HTTPRoute {route.manifest.name} names Gateway {', '.join(route.gateways) or '-'}, not in the "
            "manifests (load balancer attributes not read)"
        )
        return None, None, (None, None)
    class_name = gateway.spec.get("gatewayClassName")
    gateway_class = next((o for o in objects if o.kind == "GatewayClass" and o.name == class_name), None)

    def config(ref: Mapping[str, Any], owner: Manifest) -> Manifest | None:
        if ref.get("kind") != "LoadBalancerConfiguration":
            return None
        found = next((o for o in objects if o.kind == "LoadBalancerConfiguration" and o.name == ref.get("name")), None)
        if found is None:
            notes.append(f"{owner.label} names LoadBalancerConfiguration {ref.get('name')}, not in the manifests")
        return found

    own = config(mapping(mapping(gateway.spec.get("infrastructure")).get("parametersRef")), gateway)
    inherited = config(mapping(gateway_class.spec.get("parametersRef")), gateway_class) if gateway_class else None
    return gateway, gateway_class, (own, inherited)


def _target_group_configs(
    service: Manifest | None,
    gateway_configs: tuple[Manifest | None, Manifest | None],
    objects: Sequence[Manifest],
) -> tuple[Manifest | None, Manifest | None]:
    """The Service's TargetGroupConfiguration and the Gateway's default one (Gateway's LBC, else its class's)."""
    tgcs = [o for o in objects if o.kind == "TargetGroupConfiguration"]
    own = None
    if service is not None:
        own = next(
            (
                t
                for t in tgcs
                if mapping(t.spec.get("targetReference")).get("name") == service.name
                and mapping(t.spec.get("targetReference")).get("kind", "Service") == "Service"
                and t.same_namespace(service)
            ),
            None,
        )
    default = None
    for config in gateway_configs:
        ref = mapping(config.spec.get("defaultTargetGroupConfiguration")) if config is not None else {}
        default = default or next((t for t in tgcs if t.name == ref.get("name")), None)
    return own, default
