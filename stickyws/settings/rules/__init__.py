"""Named cross-setting rules: the one place where settings are judged.

Each rule is a small pure function of :class:`Settings` that yields :class:`Finding` objects, and
carries the :class:`~stickyws.settings.scopes.Scope` values it speaks of. The CDK constructs run
the rules of the parts they build before synthesis (errors stop the synth), the server runs them at
start-up, and the auditor runs the very same rules on settings read back from a live load balancer
or a template, for the parts that deployment has. A rule's id is its public name.

Modules: ``engine`` (what a rule is, :data:`RULES`, :func:`plan`, :func:`validate`,
:func:`settings_read_by`), then the rules by the part they speak of: ``ranges`` (any part),
``load_balancer``, ``service`` (the task and its deployments), ``server`` (your own and the
reference server), ``registry`` and ``kubernetes`` (the workload on EKS). Add a rule with
:func:`~stickyws.settings.rules.engine.define_rule` in the module of its part and its id in
:data:`ORDER`: this package registers the defined rules in :data:`RULES` in that order, the order of
reports and of the README's rules table, whatever module each lives in. :func:`rule` registers a
rule directly, after those.
"""

from __future__ import annotations

from stickyws.settings.rules import kubernetes, load_balancer, ranges, registry, server, service
from stickyws.settings.rules.engine import (
    DEFINED,
    RULES,
    CheckFn,
    Rule,
    RulePlan,
    Skipped,
    plan,
    rule,
    settings_read_by,
    validate,
)
from stickyws.settings.rules.load_balancer import (
    CAPACITY_RESERVATION_LCU,
    NEW_CONNECTIONS_PER_LCU,
    capacity_reservation_for,
)
from stickyws.settings.rules.registry import (
    DEFAULT_ENGINE_VERSIONS,
    IAM_AUTH_SINCE,
    MAX_CLUSTER_NODES,
    REGISTRY_CONNECTIONS_PER_SERVER,
    SERVERLESS_MAX_CLIENTS,
    SERVERLESS_PUBSUB_HARD_BYTES,
    SERVERLESS_PUBSUB_SOFT_BYTES,
    SHARDED_PUBSUB_SINCE,
    engine_version,
)
from stickyws.settings.rules.service import (
    CANARY_STEP_PERCENT,
    LINEAR_STEP_PERCENT,
    MAX_DEPLOYMENT_PLAN_MIN,
    deployment_plan_min,
)

#: Every rule the modules define, in the order :data:`RULES` holds them (reports, tables).
ORDER = (
    "in-range",
    "http2-off",
    "ping-within-idle-timeout",
    "drain-within-deregistration-delay",
    "drain-pace-within-deregistration-delay",
    "stop-timeout-covers-shutdown",
    "health-check-timing",
    "stickiness",
    "capacity-reservation",
    "registry-ttl-order",
    "fargate-task-size",
    "task-counts",
    "deployment-keeps-capacity",
    "deployment-plan",
    "migration-pace-covers-fleet",
    "deployment-moves-connections",
    "scaling-below-limit",
    "scale-in-protection-renewal",
    "topic-retention-covers-reconnect",
    "output-bound-fits-messages",
    "publish-port-apart",
    "server-env",
    "registry-topology",
    "registry-engine",
    "registry-auth",
    "registry-pubsub-backlog",
    "registry-serverless-clients",
    "k8s-names",
    "k8s-prestop-covers-propagation",
    "k8s-grace-covers-drain",
    "k8s-drain-within-deregistration-delay",
    "k8s-target-type",
    "k8s-readiness-gate",
    "k8s-replica-counts",
    "k8s-pdb-keeps-pods",
    "k8s-rollout",
)


RULES.add_in_order(DEFINED, ORDER, listed_in="ORDER of stickyws/settings/rules/__init__.py")

__all__ = [
    "CANARY_STEP_PERCENT",
    "CAPACITY_RESERVATION_LCU",
    "DEFAULT_ENGINE_VERSIONS",
    "IAM_AUTH_SINCE",
    "LINEAR_STEP_PERCENT",
    "MAX_CLUSTER_NODES",
    "MAX_DEPLOYMENT_PLAN_MIN",
    "NEW_CONNECTIONS_PER_LCU",
    "ORDER",
    "REGISTRY_CONNECTIONS_PER_SERVER",
    "RULES",
    "SERVERLESS_MAX_CLIENTS",
    "SERVERLESS_PUBSUB_HARD_BYTES",
    "SERVERLESS_PUBSUB_SOFT_BYTES",
    "SHARDED_PUBSUB_SINCE",
    "CheckFn",
    "Rule",
    "RulePlan",
    "Skipped",
    "capacity_reservation_for",
    "deployment_plan_min",
    "engine_version",
    "kubernetes",
    "load_balancer",
    "plan",
    "ranges",
    "registry",
    "rule",
    "server",
    "service",
    "settings_read_by",
    "validate",
]
