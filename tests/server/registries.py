"""The two registry modes the server tests run against: one redis-server, and a real local Redis Cluster.

``registry_url`` is parametrized over both, so a test that takes it proves its claim on each; ``Admin``
gives a test the few raw operations it needs (a client that routes each key to its slot's primary, keys,
publishing and subscribing to the plain server channels, subscriber counts, killing the subscribers) on
either, since a cluster spreads keys and channels over its primaries.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from stickyws import keys

#: Seconds any raw call may take: a registry that stops answering fails the test instead of hanging it.
TIMEOUT_S = 5.0


class Admin:
    """Raw registry operations for assertions, on one redis-server or on every primary of a cluster."""

    def __init__(self, url: str, cluster: Any = None) -> None:
        self.url = url
        self.cluster = cluster
        ports = [n.port for n in cluster.primary_nodes()] if cluster is not None else None
        self.clients = (
            [redis.Redis(host="127.0.0.1", port=p, socket_timeout=TIMEOUT_S) for p in ports]
            if ports
            else [redis.Redis.from_url(url, socket_timeout=TIMEOUT_S)]
        )
        #: Every live node (replicas too): where a plain channel's subscribers may sit on a cluster.
        self.nodes = (
            [redis.Redis(host="127.0.0.1", port=n.port, socket_timeout=TIMEOUT_S) for n in cluster.nodes if n.alive]
            if cluster is not None
            else self.clients
        )
        #: Key commands routed to the primary of each key's slot (``RedisCluster``), or the one redis-server.
        self.client: redis.Redis | redis.RedisCluster = (
            redis.RedisCluster.from_url(url, socket_timeout=TIMEOUT_S) if cluster is not None else self.clients[0]
        )

    def publish(self, channel: str, message: str) -> None:
        """PUBLISH on a plain channel (a cluster forwards it to every node)."""
        self.clients[0].publish(channel, message)

    def pubsub(self) -> Any:
        """A pub/sub of plain channels on one node (a cluster delivers every node's plain PUBLISH there)."""
        return self.clients[0].pubsub()

    def keys(self) -> list[bytes]:
        """Every key of the registry, sorted."""
        return sorted(k for c in self.clients for k in c.keys("*"))

    def stored(self) -> list[bytes]:
        """Every key of the registry but the servers' heartbeats, sorted."""
        return [k for k in self.keys() if not k.endswith(b":heartbeat")]

    def subscribers(self, channel: str) -> int:
        """How many connections subscribe to ``channel`` (sharded on a cluster)."""
        if self.cluster is None:
            return int(self.clients[0].pubsub_numsub(channel)[0][1])
        if not keys.is_sharded_channel(channel):  # NUMSUB counts the node's own subscribers only
            return sum(int(c.pubsub_numsub(channel)[0][1]) for c in self.nodes)
        return sum(int(c.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1]) for c in self.clients)

    def kill_subscribers(self) -> int:
        """Drop every pub/sub connection (what a failover or an output-buffer limit does); returns how many."""
        return sum(int(c.client_kill_filter(_type="pubsub")) for c in self.clients)

    def close(self) -> None:
        if self.cluster is not None:
            self.client.close()
            for c in self.nodes:
                c.close()
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
