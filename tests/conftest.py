"""Fixtures shared by the whole suite: real local services on free loopback ports, and the one reference synth."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stickyws.localcluster import LocalCluster
from stickyws.localproc import RedisServer
from tests.cdk_reference import ReferenceSynth, load_cdk_context, synthesize_reference

#: pytest's own tester, for the tests of the stickyws pytest plugin (tests/packaging/test_plugin.py).
pytest_plugins = ("pytester",)


#: Folders whose tests run real process fleets (twins, browsers); with ``pytest -n 3 --dist loadgroup``
#: (``make test``) each group runs on one worker, in order, while the other workers take the rest.
XDIST_GROUPS = {"e2e": "fleet", "twin": "fleet", "browser": "browser"}
#: Fleet files of their own group (the deployments' end-to-end proofs), so that the fleet's serial time
#: is shared between two workers; a file here wins over its folder.
XDIST_FILE_GROUPS = {
    "test_deploy_migration.py": "deployments",
    "test_eks_rollout.py": "deployments",
    "test_scale_in.py": "deployments",
    "test_rolling_no_double_move.py": "deployments",
    "test_twin_blue_green.py": "deployments",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put every test of a fleet folder in its folder's xdist group (a no-op without xdist)."""
    root = Path(__file__).parent
    for item in items:
        parts = Path(str(item.fspath)).relative_to(root).parts
        group = (XDIST_FILE_GROUPS.get(parts[-1]) or XDIST_GROUPS.get(parts[0])) if parts else None
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_configure(config: pytest.Config) -> None:
    """Register the stickyws pytest plugin when its entry point did not (an environment installed before it existed)."""
    if not config.pluginmanager.has_plugin("stickyws"):
        config.pluginmanager.register(importlib.import_module("stickyws.testing.plugin"), "stickyws")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session; tests that need a clean slate use ``redis_url``."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the shared redis-server, flushed before the test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def make_redis() -> Iterator[Callable[[], RedisServer]]:
    """Factory for a private redis-server that a test may stop, kill or restart."""
    started: list[RedisServer] = []

    def make() -> RedisServer:
        server = RedisServer().start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.__exit__(None, None, None)


# The reference CDK app, synthesized once per session (helpers in tests/cdk_reference.py).


@pytest.fixture(scope="session")
def cdk_context() -> dict[str, Any]:
    """cdk.json's context block."""
    return load_cdk_context()


@pytest.fixture(scope="session")
def reference_synth(tmp_path_factory: pytest.TempPathFactory) -> ReferenceSynth:
    """Build and synthesize the reference app once per session (cdk-nag on, built-in validation off)."""
    return synthesize_reference(tmp_path_factory.mktemp("cdk-reference"))


@pytest.fixture(scope="session")
def reference_template(reference_synth: ReferenceSynth) -> Any:
    """``aws_cdk.assertions.Template`` of the reference stack."""
    return reference_synth.template


@pytest.fixture(scope="session")
def reference_template_json(reference_synth: ReferenceSynth) -> dict[str, Any]:
    """The reference stack's CloudFormation template as a dict."""
    return reference_synth.template_json


@pytest.fixture(scope="session")
def reference_stack(reference_synth: ReferenceSynth) -> Any:
    """The synthesized ``StickyWebSocketStack`` construct."""
    return reference_synth.stack


@pytest.fixture(scope="session")
def reference_outdir(reference_synth: ReferenceSynth) -> Path:
    """Cloud assembly directory of the reference synth."""
    return reference_synth.outdir


# A real Redis Cluster (3 primaries + 3 replicas on loopback), shared by the session.


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """One local Redis Cluster for the session; a test that kills a node restarts it before it ends."""
    with LocalCluster(primaries=3, replicas=1) as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster: LocalCluster) -> str:
    """URL of a node of the shared cluster, every primary flushed and the cluster ok before the test."""
    import redis

    redis_cluster.wait_until_ok()
    for node in redis_cluster.primary_nodes():
        client = redis.Redis(host="127.0.0.1", port=node.port)
        try:
            client.flushall()
        finally:
            client.close()
    return redis_cluster.url
