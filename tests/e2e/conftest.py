"""One shared twin for the end-to-end tests (three servers, settings in :mod:`tests.e2e.support`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stickyws.twin.cluster import TwinCluster
from tests.e2e.support import E2E_SETTINGS, SERVERS, TIME_SCALE, require_binaries


@pytest.fixture(scope="package")
def shared_twin() -> Iterator[TwinCluster]:
    """Redis, three reference servers and HAProxy, shared by the end-to-end tests and stopped after them."""
    require_binaries()
    with TwinCluster(E2E_SETTINGS, servers=SERVERS, time_scale=TIME_SCALE) as twin:
        yield twin


@pytest.fixture
def twin(shared_twin: TwinCluster) -> TwinCluster:
    """The shared twin with exactly three healthy servers (a test that killed or replaced one gets it back)."""
    for _ in range(SERVERS - len(shared_twin.serving())):
        shared_twin.add()
    assert len(shared_twin.serving()) == SERVERS
    return shared_twin
