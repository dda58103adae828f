"""Judge a :class:`~stickyws.audit.view.DeploymentView`: the model's rules plus deployment facts.

:func:`audit` does four things, in order:

1. Rebuild the settings. The server's settings come from the container, read the way the
   server reads them (:func:`stickyws.settings.read_server_environment`): its Docker labels say
   whose server it is (``stickyws.server-mode``) and which variables carry which settings
   (``stickyws.server-env``); the reference server reads every ``STICKYWS_*`` variable, your own
   server only the variables it is told. The infrastructure's settings come from the load balancer,
   target group, service and task definition (:func:`stickyws.audit.mapping.observe`) and win over
   the container, because they are what AWS actually does. ``assume`` (``--assume``) wins over
   everything read, and each value it replaced is reported (:class:`Override`).
2. Find the parts the deployment has (:func:`parts_of`): a load balancer, an ECS service, a server
   container, a registry.
3. Run the settings model's rules for those parts (``Settings.plan(parts)`` and
   ``Settings.validate(parts)``): one row per rule in :data:`stickyws.settings.RULES`; a rule the
   plan skips is a ``skip`` row carrying the plan's reason. The auditor holds no copy of any rule.
4. Run the deployment checks in :data:`CHECKS` (facts that are not settings: the Upgrade listener
   rule, TLS policy, access logs, circuit breaker, task ingress, the registry's encryption, and
   whether the server's settings agree with the infrastructure's); a check whose scopes are not all
   present is skipped the same way.

A rule that fails only because of a setting the auditor could not observe (a reference server whose
container does not show it, say) is reported as ``warn`` and names the assumption.

Modules: ``engine`` (what a check and a row are, :data:`CHECKS`), ``runner`` (:func:`audit`), then
the deployment checks by what they look at: ``load_balancer`` (listeners and their rules),
``target_groups``, ``service`` (the service, its tasks and deployments, the container's settings)
and ``registry``. Add a check with :func:`~stickyws.audit.checks.engine.define_check` in the module
of what it looks at and its id in :data:`ORDER`: this package registers the defined checks in
:data:`CHECKS` in that order, the order of reports and of docs/audit.md's table.
"""

from __future__ import annotations

from stickyws.audit.checks import load_balancer, registry, service, target_groups
from stickyws.audit.checks.engine import (
    CHECKS,
    DEFINED,
    LB,
    REGISTRY,
    SERVER,
    SERVICE,
    STATUS_OF_SEVERITY,
    Audit,
    CheckFn,
    CheckResult,
    Context,
    DeploymentCheck,
    Outcome,
    Override,
    Status,
    catalog,
    deployment_check,
    scopes_of,
    short_name,
    status_of,
)
from stickyws.audit.checks.runner import ABSENT_PARTS, audit, parts_of, variable_of
from stickyws.audit.checks.service import MOVE_CONNECTIONS_STAGE

#: Every deployment check the modules define, in the order :data:`CHECKS` holds them (reports, tables).
ORDER = (
    "upgrade-rule",
    "tls-policy",
    "invalid-header-dropping",
    "access-logs",
    "service-behind-target-group",
    "deployment-circuit-breaker",
    "task-ingress-from-alb-only",
    "registry-encryption-and-auth",
    "app-settings-match",
    "weighted-forward-not-sticky",
    "production-rule-forward-only",
    "production-weights-follow-tasks",
    "target-optimizer-off",
    "deployment-moves-blue-sockets",
)

CHECKS.add_in_order(DEFINED, ORDER, listed_in="ORDER of stickyws/audit/checks/__init__.py")

__all__ = [
    "ABSENT_PARTS",
    "CHECKS",
    "LB",
    "MOVE_CONNECTIONS_STAGE",
    "ORDER",
    "REGISTRY",
    "SERVER",
    "SERVICE",
    "STATUS_OF_SEVERITY",
    "Audit",
    "CheckFn",
    "CheckResult",
    "Context",
    "DeploymentCheck",
    "Outcome",
    "Override",
    "Status",
    "audit",
    "catalog",
    "deployment_check",
    "load_balancer",
    "parts_of",
    "registry",
    "scopes_of",
    "service",
    "short_name",
    "status_of",
    "target_groups",
    "variable_of",
]
