"""The workload: Namespace, Deployment, Service, PodDisruptionBudget and HorizontalPodAutoscaler, as plain data.

The stop sequence (see :mod:`stickyws.settings.rules.kubernetes`): the pod's preStop hook waits
``pre_stop_delay_s`` while the controller's deregistration reaches the ALB, then the server drains; SIGTERM
follows the hook, SIGKILL ``termination_grace_period_s`` after the deletion.

* The reference server's hook is ``stickyws server drain-self`` (an exec action): it asks the server on
  127.0.0.1 to wait ``pre_stop_delay_s``, drain, and returns when the drain has ended.
* Your own server's hook is a ``sleep`` action of ``pre_stop_delay_s`` (no shell or ``sleep`` binary
  needed in the image; Kubernetes 1.30 or later); your server drains on the SIGTERM that follows.

Probes: readiness asks the health path the ALB asks (``health_check_*``), so a pod that reports 503 while
draining leaves the Service's endpoints; liveness only checks that the port accepts TCP, so a draining or
full server (503 on the health path) is never restarted. The container asks for ``task_cpu`` (1024 units =
one vCPU) and ``task_memory_mib``, and the autoscaler aims at ``target_cpu_percent`` of that CPU, waiting
``scale_in_cooldown_s`` (at most 3600 s) before it removes pods: the same settings as the ECS service's.
"""

from __future__ import annotations

from typing import Any

from stickyws.k8s.app import PORT_NAME, WebSocketApp
from stickyws.settings import ENV_JWT_SECRET, ENV_PUBLISH_KEY, ENV_REDIS_URL, server_environment, server_labels

#: The namespace label that makes the controller inject its pod readiness gate.
READINESS_GATE_LABEL = "elbv2.k8s.aws/pod-readiness-gate-inject"
#: The reference server's preStop command.
DRAIN_SELF = ["stickyws", "server", "drain-self"]
#: Longest scale-down stabilization window the HorizontalPodAutoscaler accepts.
MAX_STABILIZATION_S = 3600
#: Keys of the reference server's Secret: ``(environment variable, key, optional)``.
SECRET_KEYS = (
    (ENV_JWT_SECRET, "jwt-secret", False),
    (ENV_REDIS_URL, "redis-url", False),
    (ENV_PUBLISH_KEY, "publish-key", True),
)
CONTAINER_NAME = "server"


def namespace(app: WebSocketApp) -> dict[str, Any]:
    """The Namespace, labelled for the controller's pod readiness gate when ``readiness_gate`` is on."""
    labels = {"app.kubernetes.io/part-of": "stickyws"}
    if app.settings.kubernetes.readiness_gate:
        labels[READINESS_GATE_LABEL] = "enabled"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": app.namespace, "labels": labels}}


def deployment(app: WebSocketApp) -> dict[str, Any]:
    """The Deployment: replicas, rolling update, grace period, the container with its hook, probes and env."""
    k = app.settings.kubernetes
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": app.metadata(),
        "spec": {
            "replicas": k.replicas,
            "selector": {"matchLabels": app.selector()},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": f"{k.max_surge_percent}%",
                    "maxUnavailable": f"{k.max_unavailable_percent}%",
                },
            },
            "template": {
                # The server mode and what it is told, for an auditor of the manifests.
                "metadata": {"labels": app.labels(), "annotations": server_labels(app.settings)},
                "spec": _pod_spec(app),
            },
        },
    }


def _pod_spec(app: WebSocketApp) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": app.settings.kubernetes.termination_grace_period_s,
        "automountServiceAccountToken": False,
        "containers": [_container(app)],
    }
    if not app.settings.own_server:
        spec["securityContext"] = {"runAsNonRoot": True}  # the reference image runs as user 10001
    return spec


def _container(app: WebSocketApp) -> dict[str, Any]:
    s = app.settings
    tg, task = s.target_group, s.task
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": app.image,
        "ports": [{"name": PORT_NAME, "containerPort": app.port, "protocol": "TCP"}],
        "env": _environment(app),
        "resources": {
            "requests": {"cpu": f"{int(task.task_cpu) * 1000 // 1024}m", "memory": f"{task.task_memory_mib}Mi"},
            "limits": {"memory": f"{task.task_memory_mib}Mi"},
        },
        "readinessProbe": {
            "httpGet": {"path": tg.health_check_path, "port": PORT_NAME},
            "periodSeconds": tg.health_check_interval_s,
            "timeoutSeconds": tg.health_check_timeout_s,
            "successThreshold": 1,
            "failureThreshold": tg.unhealthy_threshold_count,
        },
        "livenessProbe": {
            "tcpSocket": {"port": PORT_NAME},
            "periodSeconds": tg.health_check_interval_s,
            "timeoutSeconds": tg.health_check_timeout_s,
            "failureThreshold": tg.unhealthy_threshold_count,
        },
    }
    pre_stop = _pre_stop(app)
    if pre_stop is not None:
        container["lifecycle"] = {"preStop": pre_stop}
    return container


def _pre_stop(app: WebSocketApp) -> dict[str, Any] | None:
    """``drain-self`` for the reference server; a ``sleep`` action for your own (none when the delay is 0)."""
    if not app.settings.own_server:
        return {"exec": {"command": list(DRAIN_SELF)}}
    delay = app.settings.kubernetes.pre_stop_delay_s
    return {"sleep": {"seconds": delay}} if delay > 0 else None


def _environment(app: WebSocketApp) -> list[dict[str, Any]]:
    """The settings the server is told (every ``STICKYWS_*`` for the reference server, ``server_env`` for
    yours), then the reference server's secrets from its Secret."""
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in server_environment(app.settings).items()]
    if not app.settings.own_server:
        for variable, key, optional in SECRET_KEYS:
            ref = {"name": app.secrets, "key": key, **({"optional": True} if optional else {})}
            env.append({"name": variable, "valueFrom": {"secretKeyRef": ref}})
    return env


def service(app: WebSocketApp) -> dict[str, Any]:
    """The Service in front of the pods: ClusterIP for ip targets, NodePort for instance targets."""
    kind = "ClusterIP" if app.settings.kubernetes.k8s_target_type == "ip" else "NodePort"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": app.metadata(),
        "spec": {
            "type": kind,
            "selector": app.selector(),
            "ports": [{"name": PORT_NAME, "port": app.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def pod_disruption_budget(app: WebSocketApp) -> dict[str, Any]:
    """The PodDisruptionBudget: at most ``pdb_max_unavailable`` pods stopped by a voluntary disruption."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": app.metadata(),
        "spec": {
            "maxUnavailable": app.settings.kubernetes.pdb_max_unavailable,
            "selector": {"matchLabels": app.selector()},
        },
    }


def autoscaler(app: WebSocketApp) -> dict[str, Any]:
    """The HorizontalPodAutoscaler: ``min_replicas``..``max_replicas`` at ``target_cpu_percent`` of the request."""
    k, task = app.settings.kubernetes, app.settings.task
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": app.metadata(),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app.name},
            "minReplicas": k.min_replicas,
            "maxReplicas": k.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": task.target_cpu_percent},
                    },
                }
            ],
            "behavior": {
                "scaleDown": {"stabilizationWindowSeconds": min(task.scale_in_cooldown_s, MAX_STABILIZATION_S)}
            },
        },
    }
