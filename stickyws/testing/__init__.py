"""Test your own sticky WebSocket stack offline: deploy its template into moto, audit it, assert it is ready.

* :func:`deploy_template` -- a synthesized template deployed into moto, with the properties moto's
  CloudFormation drops re-applied through public API calls (:mod:`stickyws.testing.moto_compat`);
* :func:`audit_template`, :func:`audit_deployment` -- the auditor's rules (``stickyws audit``) on a
  template or on a stack read back with boto3;
* :func:`assert_websocket_ready` -- fails with the audit table when a stack is not WebSocket-ready;
* the pytest plugin (:mod:`stickyws.testing.plugin`, loaded through its entry point) with the
  ``stickyws_moto`` fixtures.

Install with the ``[testing]`` extra (moto, boto3, pytest). This package imports neither moto
nor boto3 until a deployment or a live audit needs them.
"""

from stickyws.testing.audits import audit_deployment, audit_template
from stickyws.testing.aws_env import REGION, fake_aws_environment
from stickyws.testing.deployment import MotoDeployment, deploy_template
from stickyws.testing.moto_compat import GAPS, Gap
from stickyws.testing.readiness import NotWebSocketReady, assert_websocket_ready

__all__ = [
    "GAPS",
    "REGION",
    "Gap",
    "MotoDeployment",
    "NotWebSocketReady",
    "assert_websocket_ready",
    "audit_deployment",
    "audit_template",
    "deploy_template",
    "fake_aws_environment",
]
