"""The two registry modes the server tests run against: one redis-server, and a real local Redis Cluster.

``registry_url`` is parametrized over both, so a test that takes it proves its claim on each; ``Admin``
gives a test the few raw operations it needs (keys, subscriber counts, killing the subscribers) on
either, since a cluster spreads keys and channels over its primaries.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from stickyws import keys


class Admin:
    """Raw registry operations for assertions, on one redis-server or on every primary of a cluster."""

    def __init__(self, url: str, cluster: Any = None) -> None:
        self.url = url
        self.cluster = cluster
        ports = [n.port for n in cluster.primary_nodes()] if cluster is not None else None
        self.clients = [redis.Redis(host="127.0.0.1", port=p) for p in ports] if ports else [redis.Redis.from_url(url)]

    def keys(self) -> list[bytes]:
        """Every key of the registry, sorted."""
        return sorted(k for c in self.clients for k in c.keys("*"))

    def subscribers(self, channel: str) -> int:
        """How many connections subscribe to ``channel`` (sharded on a cluster)."""
        if self.cluster is None or not keys.is_sharded_channel(channel):
            return sum(int(c.pubsub_numsub(channel)[0][1]) for c in self.clients[:1])
        return sum(int(c.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1]) for c in self.clients)

    def kill_subscribers(self) -> int:
        """Drop every pub/sub connection (what a failover or an output-buffer limit does); returns how many."""
        return sum(int(c.client_kill_filter(_type="pubsub")) for c in self.clients)

    def close(self) -> None:
        for c in self.clients:
            c.close()


@pytest.fixture(params=["single", "cluster"])
def registry_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a flushed registry: one redis-server, then a 3+3 local Redis Cluster."""
    if request.param == "single":
        yield request.getfixturevalue("redis_url")
    else:
        yield request.getfixturevalue("cluster_url")


@pytest.fixture
def admin(registry_url: str, request: pytest.FixtureRequest) -> Iterator[Admin]:
    """:class:`Admin` of ``registry_url``."""
    cluster = (
        request.getfixturevalue("redis_cluster")
        if request.node.callspec.params.get("registry_url") == "cluster"
        else None
    )
    a = Admin(registry_url, cluster)
    yield a
    a.close()
