"""A Redis restart under traffic: connections stay up and the registry is reconciled.

One redis-server only: the test restarts the twin's own redis-server with its data lost, which the
session's shared Redis Cluster must survive; a cluster primary's failover is tests/cluster/test_failover.py.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis

from stickyws import keys
from stickyws.client.connection import StickyClient
from stickyws.twin.cluster import TwinCluster
from tests.e2e.support import E2E_SETTINGS, client_session, run, session_field

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

CLIENTS = 30
DOWN_S = 1.0
#: Reconciliation runs on the servers' heartbeat; allow a few beats after Redis is back.
RECONCILE_BOUND_S = 4 * E2E_SETTINGS["heartbeat_interval_s"] + 2.0


def test_redis_restart_keeps_connections_and_reconciles_the_registry(twin: TwinCluster) -> None:
    """30 clients keep their one connection through a Redis restart (data lost), every message is
    confirmed once, and routes, sessions and heartbeats are back within the bound."""
    registry = redis.Redis.from_url(twin.redis.url, decode_responses=True, socket_timeout=2)

    async def scenario() -> tuple[list[StickyClient], float]:
        async with client_session() as session:
            clients = [StickyClient(twin.url, twin.token(f"redis-{i}"), session=session) for i in range(CLIENTS)]
            for c in clients:
                c.start()
            await asyncio.gather(*(c.wait_connected(20) for c in clients))
            stop = asyncio.Event()

            async def stream(c: StickyClient) -> None:
                while not stop.is_set():
                    c.send({"n": c.outbox.next_id})
                    await asyncio.sleep(0.2)

            senders = [asyncio.create_task(stream(c)) for c in clients]
            await asyncio.sleep(0.5)
            await asyncio.to_thread(twin.redis.restart, DOWN_S)
            back_at = time.monotonic()
            reconciled_s = await asyncio.to_thread(_wait_reconciled, registry, clients, twin, back_at)
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*senders)
            await asyncio.gather(*(c.wait_confirmed(10) for c in clients))
            await asyncio.gather(*(c.close() for c in clients))
            return clients, reconciled_s

    try:
        clients, reconciled_s = run(scenario(), timeout_s=60)
        for c in clients:
            assert c.stats.connects == 1
            assert sum(c.stats.close_codes.values()) == 0
            assert c.outbox.pending == {}
            assert sorted(c.outbox.confirmations) == list(range(1, c.outbox.sent_count + 1))
            assert set(c.outbox.confirmations.values()) == {1}
        assert reconciled_s <= RECONCILE_BOUND_S
        print(f"redis restart ({DOWN_S:g} s down): {CLIENTS} connections kept, reconciled {reconciled_s:.2f} s after")
    finally:
        registry.close()


def _wait_reconciled(registry: redis.Redis, clients: list[StickyClient], twin: TwinCluster, since: float) -> float:
    """Seconds until every user routes to its server, every session holds its state and every server beats."""
    while True:
        try:
            users = [(f"redis-{i}", c) for i, c in enumerate(clients)]
            routes_ok = all(registry.get(keys.user_key(user)) == c.server_id for user, c in users)
            sessions_ok = all(session_field(registry, c, "sid") == c.session_id for c in clients)
            beats = [registry.get(keys.heartbeat_key(name)) for name in twin.serving()]
            beats_ok = all(
                b is not None and json.loads(b).get("serverId") == n for b, n in zip(beats, twin.serving(), strict=True)
            )
            if routes_ok and sessions_ok and beats_ok:
                return time.monotonic() - since
        except redis.RedisError:
            pass
        if time.monotonic() - since > RECONCILE_BOUND_S:
            raise AssertionError(f"registry not reconciled within {RECONCILE_BOUND_S:g} s")
        time.sleep(0.05)
