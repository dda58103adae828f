"""The stickyws pytest plugin: your synthesized stack deployed into moto, as fixtures.

Registered through the ``pytest11`` entry point, so installing stickyws is enough; the fixtures
need the ``[testing]`` extra (moto, boto3) only when a test uses them. Give the plugin your
template by overriding :func:`stickyws_template` in a ``conftest.py`` (module or session scope)::

    @pytest.fixture(scope="session")
    def stickyws_template() -> dict:
        return my_synthesized_template()  # e.g. Template.from_stack(stack).to_json()

    def test_my_stack_is_websocket_ready(stickyws_moto):
        assert_websocket_ready(stickyws_moto)

Fixtures (all module-scoped: one moto account per test module):

* ``stickyws_template`` -- the template to deploy; override it (the default fails, saying so);
* ``stickyws_stack_name`` -- its stack name (default ``StickyWebSocketTest``);
* ``stickyws_aws_region`` -- the account's region (default ``eu-west-1``);
* ``stickyws_moto_session`` -- a ``boto3.Session`` in a fresh moto account, with fake credentials
  in the environment and no way out to AWS;
* ``stickyws_moto`` -- :class:`~stickyws.testing.MotoDeployment` of ``stickyws_template``;
* ``stickyws_deploy`` -- ``deploy(template, stack_name)``: deploy more stacks (say, a broken copy)
  into the same account.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from stickyws.testing.aws_env import REGION, fake_aws_environment

if TYPE_CHECKING:
    from stickyws.testing.deployment import MotoDeployment

#: Stack name of ``stickyws_moto`` unless ``stickyws_stack_name`` is overridden.
DEFAULT_STACK_NAME = "StickyWebSocketTest"

Deploy = Callable[[Mapping[str, Any], str], "MotoDeployment"]


@pytest.fixture(scope="module")
def stickyws_template() -> Mapping[str, Any]:
    """The CloudFormation template (a dict) that ``stickyws_moto`` deploys: override this fixture."""
    pytest.fail(
        "override the stickyws_template fixture in your conftest.py (scope module or session) to return your "
        "synthesized template as a dict, e.g. aws_cdk.assertions.Template.from_stack(stack).to_json()",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def stickyws_stack_name() -> str:
    """Stack name under which ``stickyws_moto`` deploys the template."""
    return DEFAULT_STACK_NAME


@pytest.fixture(scope="module")
def stickyws_aws_region() -> str:
    """Region of the moto account."""
    return REGION


@pytest.fixture(scope="module")
def stickyws_moto_session(stickyws_aws_region: str) -> Iterator[Any]:
    """A ``boto3.Session`` in a fresh moto account (``moto.mock_aws``), fake credentials in the environment."""
    try:
        import boto3
        from moto import mock_aws
    except ImportError as exc:
        pytest.fail(f"the stickyws moto fixtures need moto and boto3: pip install 'stickyws[testing]' ({exc})")
    with pytest.MonkeyPatch.context() as mp:
        fake_aws_environment(mp, stickyws_aws_region)
        with mock_aws():
            yield boto3.Session(region_name=stickyws_aws_region)


@pytest.fixture(scope="module")
def stickyws_deploy(stickyws_moto_session: Any) -> Deploy:
    """``deploy(template, stack_name)``: a template deployed into the module's moto account, workarounds applied."""
    # Only where a test deploys (start-up time: every pytest run loads this plugin; this loads the auditor).
    from stickyws.testing.deployment import deploy_template

    def deploy(template: Mapping[str, Any], stack_name: str) -> MotoDeployment:
        return deploy_template(stickyws_moto_session, template, stack_name)

    return deploy


@pytest.fixture(scope="module")
def stickyws_moto(
    stickyws_template: Mapping[str, Any], stickyws_stack_name: str, stickyws_deploy: Deploy
) -> MotoDeployment:
    """``stickyws_template`` deployed into the module's moto account as ``stickyws_stack_name``."""
    # The template is requested first: a missing override fails before moto starts.
    return stickyws_deploy(stickyws_template, stickyws_stack_name)
