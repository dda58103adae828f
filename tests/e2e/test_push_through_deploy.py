"""Push through a rolling deploy and a kill -9: every user message and publication arrives once, in order.

Three servers behind the twin, 300 clients (each subscribed to 2 of 10 topics), a backend pushing
20,000 user messages and 5,000 topic publications at a steady rate while the twin replaces every
server with drain notices and then SIGKILLs one. The test prints the publish-to-receive lag (run
pytest with -s to see it).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import defaultdict
from typing import Any

import pytest

from stickyws.client.backoff import Backoff
from stickyws.client.connection import Event, StickyClient
from stickyws.publish import Publisher
from stickyws.twin.cluster import TwinCluster
from tests.e2e.support import E2E_SETTINGS, client_session, run

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

CLIENTS = 300
TOPICS = 10
USER_MESSAGES = 20_000
PUBLICATIONS = 5_000
#: The backend spreads its work over this many seconds (about 1,250 user messages and 310 publications a second).
SPREAD_S = 16.0


def _topics_of(i: int) -> tuple[str, str]:
    return f"topic-{i % TOPICS}", f"topic-{(i + 3) % TOPICS}"


def test_pushes_and_publications_survive_a_rolling_deploy_and_a_kill(twin: TwinCluster) -> None:
    """Every pushed message reaches its user once and in order, every publication reaches every subscriber
    once and in order (none unrecoverable), through a rolling deploy with drain notices and a kill -9."""
    _push_through_deploy(twin, CLIENTS, USER_MESSAGES, PUBLICATIONS, SPREAD_S, "one redis-server")


def test_pushes_and_publications_survive_a_rolling_deploy_and_a_kill_on_a_redis_cluster(
    cluster_twin: TwinCluster,
) -> None:
    """The same run, smaller, on a Redis Cluster registry: the same exactly-once, in-order assertions hold
    with every key, script and channel in one slot."""
    _push_through_deploy(cluster_twin, 90, 3000, 1000, 6.0, "a 3+3 Redis Cluster")


def _push_through_deploy(
    twin: TwinCluster, n_clients: int, user_messages: int, publications: int, spread_s: float, where: str
) -> None:
    received: dict[int, list[int]] = defaultdict(list)  # client -> push numbers, in arrival order
    seqs: dict[int, list[int]] = defaultdict(list)
    pubs: dict[tuple[int, str], list[int]] = defaultdict(list)  # (client, topic) -> publication numbers
    lags_ms: list[float] = []

    def recorder(i: int) -> Any:
        def on_event(event: Event) -> None:
            if event.kind == "message":
                data = event.detail["data"]
                seqs[i].append(event.detail["seq"])
                received[i].append(data["n"])
                lags_ms.append((time.time() - data["t"]) * 1000)
            elif event.kind == "publication":
                data = event.detail["data"]
                pubs[(i, event.detail["topic"])].append(data["n"])
                lags_ms.append((time.time() - data["t"]) * 1000)

        return on_event

    sent_to: dict[int, list[int]] = defaultdict(list)
    published: dict[str, list[int]] = defaultdict(list)
    published_all: list[int] = []

    async def scenario() -> tuple[list[StickyClient], str]:
        async with client_session() as session, Publisher(twin.redis.url, settings=E2E_SETTINGS) as pub:
            rng = random.Random(7)
            clients = [
                StickyClient(
                    twin.url,
                    twin.token(f"push-{i}"),
                    backoff=Backoff.from_settings(E2E_SETTINGS),
                    session=session,
                    rng=random.Random(rng.random()),
                    on_event=recorder(i),
                )
                for i in range(n_clients)
            ]
            for c in clients:
                c.start()
            await asyncio.gather(*(c.wait_connected(30) for c in clients))
            for i, c in enumerate(clients):
                for topic in _topics_of(i):
                    c.subscribe(topic)
            await asyncio.gather(*(c.wait_confirmed(20) for c in clients))

            async def backend() -> None:
                total = user_messages + publications
                start = time.monotonic()
                for k in range(total):
                    due = start + spread_s * k / total
                    if (wait := due - time.monotonic()) > 0:
                        await asyncio.sleep(wait)
                    if k % (total // publications) == total // publications - 1 and len(published_all) < publications:
                        topic = f"topic-{k % TOPICS}"
                        n = len(published[topic])
                        await pub.publish(topic, {"n": n, "t": time.time()})
                        published[topic].append(n)
                        published_all.append(n)
                    else:
                        i = k % n_clients
                        n = len(sent_to[i])
                        result = await pub.send_to_user(f"push-{i}", {"n": n, "t": time.time()})
                        assert result.status in ("sent", "stored"), result
                        sent_to[i].append(n)

            producing = asyncio.create_task(backend())
            await asyncio.sleep(1.0)
            await asyncio.to_thread(twin.rolling_deploy, drain_notice=True)
            serving = set(twin.serving())  # the victim: a new server (the first client may still be moving)
            await clients[0].wait_for(lambda c: c.connected and c.server_id in serving, 30)
            victim = clients[0].server_id
            assert victim is not None
            await asyncio.to_thread(twin.kill, victim)
            await producing
            await asyncio.gather(*(c.wait_for(lambda c: c.connected and c.server_id != victim, 30) for c in clients))

            def complete() -> bool:
                return all(len(received[i]) >= len(sent_to[i]) for i in range(n_clients)) and all(
                    len(pubs[(i, t)]) >= len(published[t]) for i in range(n_clients) for t in _topics_of(i)
                )

            async with asyncio.timeout(30):
                while not complete():  # noqa: ASYNC110 - bounded by the timeout
                    await asyncio.sleep(0.1)
            await asyncio.gather(*(c.close() for c in clients))
            return clients, victim

    clients, victim = run(scenario(), timeout_s=150)
    assert sum(len(v) for v in sent_to.values()) == user_messages
    assert sum(len(v) for v in published.values()) == publications
    for i, c in enumerate(clients):
        assert received[i] == sent_to[i], f"client {i}: pushes lost, doubled or reordered"
        assert seqs[i] == list(range(1, len(seqs[i]) + 1))
        assert c.stats.unrecoverable == 0
        assert c.stats.gaps == 0
        for topic in _topics_of(i):
            assert pubs[(i, topic)] == published[topic], f"client {i} {topic}: publications lost or doubled"
    moved = sum(1 for c in clients if len(set(c.stats.servers)) > 1)
    assert moved == n_clients  # the rolling deploy moved every client at least once
    assert any(victim in c.stats.servers for c in clients)
    q = statistics.quantiles(lags_ms, n=100)
    dropped = sum(c.stats.duplicate_messages + c.stats.duplicate_publications for c in clients)
    print(
        f"\npush through deploy + kill -9 on {where}: {user_messages} user messages, {publications} publications "
        f"({sum(len(v) for v in pubs.values())} deliveries) to {n_clients} clients; publish-to-receive lag "
        f"p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {max(lags_ms):.0f} ms; "
        f"duplicates dropped by clients: {dropped}"
    )
