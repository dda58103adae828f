"""``stickyws audit``: read a template or a live deployment, judge it with the settings model's rules.

Pipeline (pure core, thin adapters)::

    from_template.view_from_template(dict) ─┐
                                            ├─> view.DeploymentView ─> checks.audit() ─> report
    from_aws.read_stack / read_load_balancer┘      (mapping.observe)     (Settings.validate()
                                                                          + deployment CHECKS)
"""

from stickyws.audit.checks import CHECKS, Audit, CheckResult, Status, audit, catalog
from stickyws.audit.view import DeploymentView

__all__ = ["CHECKS", "Audit", "CheckResult", "DeploymentView", "Status", "audit", "catalog"]
