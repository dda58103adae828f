"""Shared twins for the end-to-end tests (three servers, settings in :mod:`tests.e2e.support`): one on a
redis-server of its own, one on the session's local Redis Cluster (3 primaries + 3 replicas).

A test that takes ``registry_twin`` runs on both with the same assertions; ``twin`` is the redis-server
twin alone, for tests whose registry is not what they measure, or that restart it. The cluster twin lives
for one module only, so it never runs beside the long fleet tests of the other modules.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from stickyws.localcluster import LocalCluster
from stickyws.localproc import pid_alive
from stickyws.twin.cluster import TwinCluster
from tests.e2e.support import E2E_SETTINGS, SERVERS, TIME_SCALE, require_binaries


def _serving(twin: TwinCluster) -> TwinCluster:
    """``twin`` with exactly three healthy servers (a test that killed or replaced one gets it back)."""
    for _ in range(SERVERS - len(twin.serving())):
        twin.add()
    assert len(twin.serving()) == SERVERS
    return twin


@pytest.fixture(scope="package")
def shared_twin() -> Iterator[TwinCluster]:
    """Redis, three reference servers and HAProxy, shared by the end-to-end tests and stopped after them."""
    require_binaries()
    with TwinCluster(E2E_SETTINGS, servers=SERVERS, time_scale=TIME_SCALE) as twin:
        yield twin


@pytest.fixture(scope="module")
def shared_cluster_twin(redis_cluster: LocalCluster) -> Iterator[TwinCluster]:
    """Three reference servers and HAProxy on the session's Redis Cluster (flushed first), stopped after the
    module's tests with none of their processes left."""
    require_binaries()
    redis_cluster.wait_until_ok()
    for node in redis_cluster.primary_nodes():
        with redis.Redis(host="127.0.0.1", port=node.port) as client:
            client.flushall()
    with TwinCluster(E2E_SETTINGS, servers=SERVERS, time_scale=TIME_SCALE, registry_url=redis_cluster.url) as twin:
        pids = twin.pids()
        yield twin
        pids = sorted({*pids, *twin.pids()})
    assert [pid for pid in pids if pid_alive(pid)] == []


@pytest.fixture
def twin(shared_twin: TwinCluster) -> TwinCluster:
    """The redis-server twin with exactly three healthy servers."""
    return _serving(shared_twin)


@pytest.fixture
def cluster_twin(shared_cluster_twin: TwinCluster) -> TwinCluster:
    """The Redis Cluster twin with exactly three healthy servers."""
    return _serving(shared_cluster_twin)


@pytest.fixture(params=["single", "cluster"])
def registry_twin(request: pytest.FixtureRequest) -> TwinCluster:
    """The redis-server twin, then the Redis Cluster twin, each with exactly three healthy servers."""
    return request.getfixturevalue("twin" if request.param == "single" else "cluster_twin")
