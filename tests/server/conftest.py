"""Fixtures of the server tests: the registry in both modes (one redis-server, a local Redis Cluster)."""

from tests.server.registries import admin, registry_url

__all__ = ["admin", "registry_url"]
