"""Fixtures for the moto tests: fake credentials and a region, and the reference template for the stickyws plugin.

The reference template comes from tests/conftest.py; the stickyws pytest plugin's ``stickyws_moto``
deploys it (stickyws.testing.plugin).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stickyws.testing.aws_env import fake_aws_environment


@pytest.fixture(scope="module")
def aws_environment() -> Iterator[None]:
    """Module-wide fake AWS environment (see :func:`fake_aws_environment`)."""
    with pytest.MonkeyPatch.context() as mp:
        fake_aws_environment(mp)
        yield


@pytest.fixture(scope="module")
def stickyws_template(reference_template_json: dict[str, Any]) -> dict[str, Any]:
    """The plugin deploys the reference stack."""
    return reference_template_json


@pytest.fixture(scope="module")
def stickyws_stack_name() -> str:
    """Under the reference stack's own name."""
    return "StickyWebSocketStack"
