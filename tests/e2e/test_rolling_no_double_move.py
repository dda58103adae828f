"""A rolling deployment from revision 1 to revision 2 moves each client once: a client drained off an old
server that lands on the other old server is sent on (``avoid``), so it never settles there and has to
move again when that server is drained in turn.

Each run starts a twin of two old servers with 40 clients, starts two new servers (maximum 200 %), then
deregisters the old servers one at a time with the drain notice. The baseline run has no revisions:
some clients drained off the first old server land on the second and move twice. The test prints one
line per run (pytest -s shows them).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import pytest

from stickyws.client.backoff import Backoff
from stickyws.client.connection import StickyClient
from stickyws.localproc import pid_alive
from stickyws.twin.cluster import TwinCluster
from tests.e2e.support import E2E_SETTINGS, TIME_SCALE, client_session, require_binaries, run

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

CLIENTS = 40
OLD_SERVERS = 2
SETTINGS = E2E_SETTINGS.with_overrides({"drain_window_s": 1})


@dataclass(frozen=True)
class MoveCount:
    """What one deployment did to the clients' placement."""

    revisions: bool
    clients: int
    #: Clients whose connections landed on an old server after their first move.
    moved_twice: int
    #: Clients that ended on a new server.
    on_new: int
    sends_on: int
    deploy_s: float

    def line(self) -> str:
        mode = "with revisions 1 -> 2" if self.revisions else "without revisions    "
        return (
            f"rolling deploy {mode}: {self.clients} clients, moved twice {self.moved_twice}, "
            f"ended on a new server {self.on_new}, sends-on {self.sends_on}, deploy {self.deploy_s:.1f} s"
        )


def moved_twice(servers: list[str], old: set[str]) -> bool:
    """Whether a client that connected to ``servers`` in turn landed on an old server after its first move."""
    first = servers[0]
    after = next((i for i, s in enumerate(servers) if s != first), len(servers))
    return any(s in old for s in servers[after:])


def _deploy(revisions: bool) -> MoveCount:
    """One run (see the module docstring) on a twin of its own, stopped with none of its processes left."""
    old_rev, new_rev = ("1", "2") if revisions else ("", "")
    twin = TwinCluster(SETTINGS.with_overrides({"revision": old_rev}), servers=OLD_SERVERS, time_scale=TIME_SCALE)
    twin.start()
    pids = twin.pids()
    try:
        old = set(twin.serving())

        async def scenario() -> MoveCount:
            async with client_session() as session:
                rng = random.Random(7)
                backoff = Backoff.from_settings(SETTINGS)
                tokens = [twin.token(f"mover-{int(revisions)}-{i}") for i in range(CLIENTS)]
                clients = [
                    StickyClient(twin.url, t, backoff=backoff, session=session, rng=random.Random(rng.random()))
                    for t in tokens
                ]
                for c in clients:
                    c.start()
                try:
                    await asyncio.gather(*(c.wait_connected(20) for c in clients))
                    started = time.monotonic()
                    twin.settings = twin.settings.with_overrides({"revision": new_rev})  # the new task definition
                    for _ in range(OLD_SERVERS):
                        await asyncio.to_thread(twin.add)
                    for name in sorted(old):
                        await asyncio.to_thread(twin.deregister, name)
                    deploy_s = time.monotonic() - started
                    await asyncio.gather(*(c.wait_connected(20) for c in clients))
                    servers = [list(c.stats.servers) for c in clients]
                    return MoveCount(
                        revisions, CLIENTS, sum(moved_twice(s, old) for s in servers),
                        sum(s[-1] not in old for s in servers), sum(c.stats.sends_on for c in clients), deploy_s,
                    )  # fmt: skip
                finally:
                    await asyncio.gather(*(c.close() for c in clients))

        return run(scenario(), timeout_s=60)
    finally:
        pids = sorted({*pids, *twin.pids()})
        twin.stop()
        assert [pid for pid in pids if pid_alive(pid)] == []


def test_moved_twice_counts_an_old_server_after_the_first_move() -> None:
    """s1 -> s3 is one move; s1 -> s2 -> s3 lands on old s2 after the first move; s1 -> s1 is no move."""
    old = {"s1", "s2"}
    assert not moved_twice(["s1", "s3"], old)
    assert not moved_twice(["s1", "s1", "s3", "s4"], old)
    assert moved_twice(["s1", "s2", "s3"], old)
    assert moved_twice(["s2", "s3", "s1"], old)
    assert not moved_twice(["s1"], old)


def test_a_rolling_deploy_with_revisions_moves_no_client_twice() -> None:
    """Old servers of revision 1 replaced by revision 2: no client lands on an old server after its first
    move and every client ends on a new server, while the same deployment without revisions moves some
    clients twice (the baseline proves the count can see a double move)."""
    require_binaries()
    baseline = _deploy(revisions=False)
    print(baseline.line())
    avoided = _deploy(revisions=True)
    print(avoided.line())
    assert (avoided.moved_twice, avoided.on_new) == (0, CLIENTS)
    assert avoided.sends_on > 0
    assert baseline.moved_twice > 0
    assert baseline.sends_on == 0
