"""Fixtures for the moto tests: fake credentials, a region, and the reference template.

``reference_synth``/``reference_template_json`` are the CDK tests' session fixtures
(tests/cdk/conftest.py), re-exported here because a conftest's fixtures are only visible below
its own directory. pytest keeps one cache per conftest that defines a fixture, so a full run
synthesizes the reference app once for tests/cdk and once more for tests/moto (a second synth in
the same process costs well under a second). Moving these fixtures to tests/conftest.py would
make it one synth for the whole session; this import line can then go.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.audit.aws_env import fake_aws_environment
from tests.cdk.conftest import reference_synth, reference_template_json

__all__ = ["reference_synth", "reference_template_json"]


@pytest.fixture(scope="module")
def aws_environment() -> Iterator[None]:
    """Module-wide fake AWS environment (see :func:`fake_aws_environment`)."""
    with pytest.MonkeyPatch.context() as mp:
        fake_aws_environment(mp)
        yield
