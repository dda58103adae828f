"""Fixtures shared by the whole suite: real local services on free loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from stickyws.localproc import RedisServer


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
