"""A template deployed into a moto account, with what moto's CloudFormation drops re-applied.

:func:`deploy_template` is what ``cdk deploy`` would have done, as far as the auditor can see:
the stack created by moto's CloudFormation (:func:`stickyws.testing.moto_compat.create_stack`),
then every property moto drops applied with public API calls
(:func:`stickyws.testing.moto_compat.apply_dropped_properties`). The result is read back with
boto3 like a live stack, so ``stickyws audit --stack-name`` and :meth:`MotoDeployment.audit` see
the template's values, never moto's defaults.

Needs the ``[testing]`` extra (moto, boto3). ``session`` must talk to moto: a ``boto3.Session``
inside ``moto.mock_aws()``, or one whose endpoint is a moto server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stickyws.audit.checks import Audit
from stickyws.testing.audits import audit_deployment
from stickyws.testing.moto_compat import deploy


@dataclass(frozen=True)
class MotoDeployment:
    """One stack deployed into moto: the boto3 session of the account, its name, template and physical ids."""

    session: Any
    stack_name: str
    template: Mapping[str, Any]
    physical: Mapping[str, str]

    def physical_id(self, resource_type: str) -> str:
        """The physical id of the one resource of ``resource_type`` (``KeyError`` when there is not exactly one)."""
        types = {logical: r.get("Type") for logical, r in self.template["Resources"].items()}
        found = [p for logical, p in self.physical.items() if types.get(logical) == resource_type]
        if len(found) != 1:
            raise KeyError(f"{len(found)} deployed resources of type {resource_type} in stack {self.stack_name}")
        return found[0]

    def audit(self, assume: Mapping[str, str] | None = None) -> Audit:
        """The audit of the stack as boto3 reads it back (the same as ``stickyws audit --stack-name``)."""
        return audit_deployment(self.session, self.stack_name, assume)


def deploy_template(session: Any, template: Mapping[str, Any], stack_name: str) -> MotoDeployment:
    """Deploy ``template`` (a synthesized CloudFormation template as a dict) into moto as ``stack_name``."""
    physical = deploy(session, template, stack_name)
    return MotoDeployment(session=session, stack_name=stack_name, template=template, physical=physical)
