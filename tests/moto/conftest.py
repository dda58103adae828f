"""Fixtures for the moto tests: fake credentials and a region (the reference template comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.audit.aws_env import fake_aws_environment


@pytest.fixture(scope="module")
def aws_environment() -> Iterator[None]:
    """Module-wide fake AWS environment (see :func:`fake_aws_environment`)."""
    with pytest.MonkeyPatch.context() as mp:
        fake_aws_environment(mp)
        yield
