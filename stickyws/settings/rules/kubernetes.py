"""Rules of a Kubernetes workload behind the AWS Load Balancer Controller: the stop sequence (preStop, grace
period, the ALB's deregistration), the target type and readiness gate, and the rollout and disruption budget.

On Kubernetes a pod's deletion starts the preStop hook and, at the same time, the controller's
deregistration of its target, which reaches the ALB up to ``deregistration_propagation_s`` later. SIGTERM
follows the preStop hook, and SIGKILL follows ``termination_grace_period_s`` after the deletion. So the
rules compare the hook's wait with the propagation, the grace period with the wait plus the drain plus the
shutdown, and the end of the drain with the moment the ALB cuts the connections still open.

These rules are in a plan only when the caller names ``Scope.KUBERNETES`` (see
:mod:`stickyws.settings.scopes`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from stickyws.settings.findings import Finding
from stickyws.settings.rules.engine import KUBERNETES, LB, SERVER, _error, _warning, define_rule

if TYPE_CHECKING:
    from stickyws.settings.model import Settings

#: A Kubernetes namespace name: an RFC 1123 DNS label.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@define_rule("k8s-names", "The namespace is a valid Kubernetes name.", KUBERNETES)
def _names(s: Settings) -> Iterator[Finding]:
    namespace = s.kubernetes.k8s_namespace
    if not DNS_LABEL.fullmatch(namespace):
        yield _error(
            "k8s-names",
            f"k8s_namespace={namespace!r} is not a DNS label",
            "set k8s_namespace to lower-case letters, digits and '-', starting and ending with a letter or "
            "digit, at most 63 characters (e.g. stickyws)",
            "k8s_namespace",
        )


@define_rule(
    "k8s-prestop-covers-propagation",
    "The preStop wait outlasts the deregistration's way to the ALB, so a draining pod gets no new clients.",
    KUBERNETES,
)
def _prestop_covers_propagation(s: Settings) -> Iterator[Finding]:
    k = s.kubernetes
    if k.pre_stop_delay_s < k.deregistration_propagation_s:
        yield _error(
            "k8s-prestop-covers-propagation",
            f"pre_stop_delay_s={k.pre_stop_delay_s} < deregistration_propagation_s={k.deregistration_propagation_s}: "
            "the pod drains while the ALB still sends it new handshakes, which land on a closing server",
            f"set pre_stop_delay_s >= {k.deregistration_propagation_s}",
            "pre_stop_delay_s",
            "deregistration_propagation_s",
        )


@define_rule(
    "k8s-grace-covers-drain",
    "The grace period holds the preStop wait, the drain and the shutdown before SIGKILL.",
    KUBERNETES,
    SERVER,
)
def _grace_covers_drain(s: Settings) -> Iterator[Finding]:
    k, sv = s.kubernetes, s.server
    need = k.pre_stop_delay_s + sv.drain_window_s + sv.shutdown_timeout_s
    if k.termination_grace_period_s < need:
        yield _error(
            "k8s-grace-covers-drain",
            f"termination_grace_period_s={k.termination_grace_period_s} < pre_stop_delay_s + drain_window_s + "
            f"shutdown_timeout_s = {need:g}: SIGKILL cuts the clients not yet moved",
            f"set termination_grace_period_s >= {need:g} (Kubernetes has no 120 s cap), or shorten "
            "pre_stop_delay_s, drain_window_s or shutdown_timeout_s",
            "termination_grace_period_s",
            "pre_stop_delay_s",
            "drain_window_s",
            "shutdown_timeout_s",
        )


@define_rule(
    "k8s-drain-within-deregistration-delay",
    "The drain, begun after the preStop wait, ends before the ALB cuts the pod's connections.",
    KUBERNETES,
    LB,
    SERVER,
)
def _drain_within_deregistration(s: Settings) -> Iterator[Finding]:
    k, sv, dereg = s.kubernetes, s.server, s.target_group.deregistration_delay_s
    ends = k.pre_stop_delay_s + sv.drain_window_s
    if ends > dereg:
        yield _error(
            "k8s-drain-within-deregistration-delay",
            f"pre_stop_delay_s + drain_window_s = {ends:g} > deregistration_delay_s={dereg}: the deregistration "
            "starts with the pod's deletion, so the ALB cuts clients that have not been told to reconnect yet",
            f"set deregistration_delay_s >= {ends:g}, or shorten pre_stop_delay_s or drain_window_s",
            "pre_stop_delay_s",
            "drain_window_s",
            "deregistration_delay_s",
        )


@define_rule(
    "k8s-target-type",
    "Stickiness reaches a pod: the controller registers pods (target type ip), not nodes.",
    KUBERNETES,
    LB,
)
def _target_type(s: Settings) -> Iterator[Finding]:
    if s.kubernetes.k8s_target_type == "instance" and s.target_group.stickiness_enabled:
        yield _error(
            "k8s-target-type",
            "k8s_target_type=instance with stickiness: the ALB cookie pins a node, and kube-proxy sends each "
            "connection to any pod behind the Service, so a reconnect rarely finds its pod",
            "set k8s_target_type=ip",
            "k8s_target_type",
            "stickiness_enabled",
        )


@define_rule(
    "k8s-readiness-gate",
    "A rollout waits for each new pod to be a healthy ALB target before it stops an old one.",
    KUBERNETES,
)
def _readiness_gate(s: Settings) -> Iterator[Finding]:
    k = s.kubernetes
    if k.k8s_target_type == "ip" and not k.readiness_gate:
        yield _error(
            "k8s-readiness-gate",
            "readiness_gate=false with k8s_target_type=ip: a rollout stops old pods as soon as new ones pass the "
            "kubelet's probe, before the ALB has registered them, so their clients reconnect into 502s and 503s",
            "set readiness_gate=true (the namespace label elbv2.k8s.aws/pod-readiness-gate-inject: enabled)",
            "readiness_gate",
            "k8s_target_type",
        )


@define_rule("k8s-replica-counts", "min_replicas <= replicas <= max_replicas.", KUBERNETES)
def _replica_counts(s: Settings) -> Iterator[Finding]:
    k = s.kubernetes
    if not k.min_replicas <= k.replicas <= k.max_replicas:
        yield _error(
            "k8s-replica-counts",
            f"min_replicas={k.min_replicas}, replicas={k.replicas}, max_replicas={k.max_replicas} are out of order",
            "keep min_replicas <= replicas <= max_replicas",
            "min_replicas",
            "replicas",
            "max_replicas",
        )


@define_rule(
    "k8s-pdb-keeps-pods",
    "The PodDisruptionBudget never lets a node drain stop every pod, and lets it stop one.",
    KUBERNETES,
)
def _pdb_keeps_pods(s: Settings) -> Iterator[Finding]:
    k = s.kubernetes
    fewest = min(k.replicas, k.min_replicas)
    if k.pdb_max_unavailable >= fewest:
        yield _error(
            "k8s-pdb-keeps-pods",
            f"pdb_max_unavailable={k.pdb_max_unavailable} >= {fewest} (the fewest of replicas and min_replicas): "
            "a node drain may stop every pod at once, and every client reconnects to nothing",
            f"set pdb_max_unavailable below {fewest} (1 is usual), or raise replicas and min_replicas",
            "pdb_max_unavailable",
            "replicas",
            "min_replicas",
        )
    elif k.pdb_max_unavailable == 0:
        yield _warning(
            "k8s-pdb-keeps-pods",
            "pdb_max_unavailable=0: node drains and cluster upgrades wait until someone deletes a pod by hand",
            "set pdb_max_unavailable=1",
            "pdb_max_unavailable",
        )


@define_rule("k8s-rollout", "A rollout can proceed and starts each replacement before an old pod drains.", KUBERNETES)
def _rollout(s: Settings) -> Iterator[Finding]:
    k = s.kubernetes
    if k.max_surge_percent == 0 and k.max_unavailable_percent == 0:
        yield _error(
            "k8s-rollout",
            "max_surge_percent=0 and max_unavailable_percent=0: Kubernetes refuses a rollout that may neither "
            "add nor remove a pod",
            "set max_surge_percent above 0 (25 is usual) and keep max_unavailable_percent=0",
            "max_surge_percent",
            "max_unavailable_percent",
        )
    elif k.max_unavailable_percent > 0:
        yield _warning(
            "k8s-rollout",
            f"max_unavailable_percent={k.max_unavailable_percent}: a rollout stops pods before their replacements "
            "exist, so their clients reconnect into reduced capacity",
            "set max_unavailable_percent=0 with max_surge_percent above 0",
            "max_unavailable_percent",
        )
