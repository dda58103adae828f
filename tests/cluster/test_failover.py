"""A Redis primary killed under traffic: the replica takes over and no client message or push is lost or doubled."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import pytest

from stickyws.client.backoff import Backoff
from stickyws.client.connection import Event, StickyClient
from stickyws.localcluster import LocalCluster
from stickyws.publish import Publisher, PublishError
from tests.e2e.support import client_session
from tests.server.helpers import fast, run, server, token

pytestmark = pytest.mark.redis

CLIENTS = 30
SEND_EVERY_S = 0.05
#: Seconds a primary's failover may take on a loaded machine (the local cluster's node timeout is 1 s).
FAILOVER_BOUND_S = 20


def test_a_primary_killed_under_traffic_loses_and_doubles_no_client_message(
    redis_cluster: LocalCluster, cluster_url: str
) -> None:
    """kill -9 of a Redis primary while 30 clients send messages through two servers and a backend pushes to
    them: its replica takes over, every client is connected at the end, every message is acknowledged and
    handled exactly once, and every push the backend got acknowledged (retrying with the same key after an
    error) reached its client exactly once, in order."""
    killed_box: list[object] = []
    received: dict[int, list[int]] = {i: [] for i in range(CLIENTS)}
    acknowledged: dict[int, list[int]] = {i: [] for i in range(CLIENTS)}
    errors: list[str] = []
    rounds_done_at: list[float] = []  # when the backend had every client's push of a round acknowledged
    moments: dict[str, float] = {}  # "killed", "failed_over": time.monotonic() of each

    def on_event(i: int) -> Callable[[Event], None]:
        def record(event: Event) -> None:
            data = event.detail.get("data")
            if event.kind == "message" and isinstance(data, dict) and "push" in data:
                received[i].append(int(data["push"]))

        return record

    async def scenario() -> tuple[list[StickyClient], dict[str, int]]:
        settings = fast(heartbeat_interval_s=0.3)
        async with (
            server(settings, redis_url=cluster_url, server_id="fo-a") as a,
            server(settings, redis_url=cluster_url, server_id="fo-b") as b,
            client_session() as session,
        ):
            clients = [
                StickyClient(
                    f"http://127.0.0.1:{(a, b)[i % 2].port}/ws",
                    token(f"fo-{i}"),
                    backoff=Backoff(0.05, 1.0),
                    session=session,
                    rng=random.Random(i),
                    on_event=on_event(i),
                )
                for i in range(CLIENTS)
            ]
            for c in clients:
                c.start()
            await asyncio.gather(*(c.wait_connected(20) for c in clients))
            stop = asyncio.Event()

            async def stream(c: StickyClient) -> None:
                while not stop.is_set():
                    c.send({"n": c.outbox.next_id})
                    await asyncio.sleep(SEND_EVERY_S)

            async def backend(pub: Publisher) -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    for i in range(CLIENTS):
                        # The same key until acknowledged (stored and delivered once), for as long as the
                        # failover itself may take.
                        give_up_at = asyncio.get_running_loop().time() + FAILOVER_BOUND_S + 5
                        while True:
                            try:
                                await pub.send_to_user(f"fo-{i}", {"push": n}, require_session=True, key=f"p{n}")
                                break
                            except PublishError as exc:
                                errors.append(exc.code)
                                if asyncio.get_running_loop().time() > give_up_at:
                                    last = errors[-3:]
                                    raise AssertionError(f"push {n} to fo-{i} never acknowledged: {last}") from None
                                await asyncio.sleep(0.05)
                        acknowledged[i].append(n)
                    rounds_done_at.append(time.monotonic())
                    await asyncio.sleep(SEND_EVERY_S * 2)

            tasks = [asyncio.create_task(stream(c)) for c in clients]
            publisher = Publisher(cluster_url)
            tasks.append(asyncio.create_task(backend(publisher)))
            await asyncio.sleep(1.0)
            moments["killed"] = time.monotonic()
            killed = await asyncio.to_thread(redis_cluster.kill_primary)
            killed_box.append(killed)
            await asyncio.to_thread(redis_cluster.wait_for_failover, killed, FAILOVER_BOUND_S)
            moments["failed_over"] = failed_over_at = time.monotonic()
            async with asyncio.timeout(FAILOVER_BOUND_S + 10):  # one whole round of pushes after the failover
                while not rounds_done_at or rounds_done_at[-1] < failed_over_at:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*tasks)
            await publisher.close()
            await asyncio.gather(*(c.wait_connected(20) for c in clients))
            await asyncio.gather(*(c.wait_confirmed(20) for c in clients))
            async with asyncio.timeout(20):  # the last pushes are on their way
                while any(received[i][-1:] != acknowledged[i][-1:] for i in range(CLIENTS)):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            handled = {}
            for i, c in enumerate(clients):
                state = await (a if i % 2 == 0 else b).core.registry.session_seqs(
                    sessions=[(f"fo-{i}", str(c.session_id))]
                )
                handled[f"fo-{i}"] = state[0] if state[0] is not None else -1
            await asyncio.gather(*(c.close() for c in clients))
            return clients, handled

    try:
        clients, last_seqs = run(scenario(), timeout_s=90)
    finally:
        if killed_box:
            redis_cluster.restart(killed_box[0])  # type: ignore[arg-type]
    for i, c in enumerate(clients):
        box = c.outbox
        assert box.pending == {}
        assert sorted(box.confirmations) == list(range(1, box.sent_count + 1))
        assert set(box.confirmations.values()) == {1}, f"client {i}: a message confirmed twice"
        assert len(c.stats.session_ids) == 1  # the session survived the failover
        assert last_seqs[f"fo-{i}"] >= box.sent_count  # every message's echo was numbered in the registry
        assert received[i] == acknowledged[i], f"client {i}: pushes lost, doubled or out of order"
    # The backend pushed through the failover: whole rounds before the kill and after the failover.
    assert rounds_done_at[0] < moments["killed"] < moments["failed_over"] < rounds_done_at[-1]
    assert set(errors) <= {"registry_unavailable"}  # what the backend saw while the replica took over
