"""The twin's migration hook: the Lambda's decisions, called again after each callBackDelay, on a real redis-server."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import redis

from stickyws import migration_hook
from stickyws.keys import drain_key, heartbeat_key
from stickyws.server.upkeep import heartbeat_body
from stickyws.settings import Settings
from stickyws.twin.migration import SOURCE, config_from_settings, max_callback_s, paced_hook

pytestmark = pytest.mark.redis

T0 = 1_767_222_000.0
#: s1 holds 3 (1.5 reconnects/s over a 2 s drain window), s2 and s3 hold 6 (3/s each): at 3/s they go one by one.
HELD = {"s1": 3, "s2": 6, "s3": 6}
SETTINGS = Settings().with_overrides(
    {"drain_window_s": 2, "migration_pace_per_s": 3, "migration_window_s": 60, "migration_done_connections": 0}
)


@dataclass
class FakeRegistry:
    url: str


@dataclass
class FakeTwin:
    """What the hook uses of a TwinCluster: settings, registry URL, time scale (ECS's 30 s call-back: 3 s), log."""

    settings: Settings
    redis: FakeRegistry
    time_scale: float = 0.1
    lines: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)


class Servers:
    """Heartbeats of blue's servers; a server told to drain has moved its clients by the next call."""

    def __init__(self, client: redis.Redis, held: dict[str, int]) -> None:
        self.client = client
        self.held = dict(held)
        self.now_s = T0
        self.sleeps: list[float] = []
        self.write()

    def write(self) -> None:
        for sid, n in self.held.items():
            self.client.set(heartbeat_key(sid), heartbeat_body(sid, n, "serving", int(self.now_s * 1000)))

    def clock(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds
        for sid in self.held:
            if self.client.exists(drain_key(sid)):
                self.held[sid] = 0
        self.write()


class StuckServers(Servers):
    """Servers whose clients stay whatever they are told."""

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds
        self.write()


def test_the_hook_tells_one_server_at_a_time_at_the_pace_and_succeeds_once_blue_is_empty(redis_url: str) -> None:
    """At 3 reconnects/s the hook tells s1 (fewest connections) first, s2 once s1's drain window has passed, then
    s3, sleeping each callBackDelay in between, writes the Lambda's drain notices, and answers SUCCEEDED once the
    heartbeats show blue empty."""
    client = redis.Redis.from_url(redis_url)
    servers = Servers(client, HELD)
    twin = FakeTwin(SETTINGS, FakeRegistry(redis_url))
    hook = paced_hook(clock=servers.clock, sleep=servers.sleep)

    hook(twin, ("s1", "s2", "s3"))  # type: ignore[arg-type]

    assert [(c.at_s, c.status, c.notices, c.blue_connections) for c in hook.calls] == [
        (0.0, "IN_PROGRESS", ("s1",), 15),
        (2.0, "IN_PROGRESS", ("s2",), 12),
        (4.0, "IN_PROGRESS", ("s3",), 6),
        (7.0, "SUCCEEDED", (), 0),
    ]
    assert servers.sleeps == [2.0, 2.0, 3.0]
    for sid in HELD:
        notice = json.loads(client.get(drain_key(sid)) or b"{}")
        assert notice["serverId"] == sid
        assert notice["source"] == SOURCE == migration_hook.SOURCE
    assert any("SUCCEEDED" in line for line in twin.lines)
    client.close()


def test_the_hook_answers_succeeded_at_the_end_of_its_window_with_clients_left(redis_url: str) -> None:
    """A server whose clients never leave keeps the hook in progress until the migration window ends, then it
    answers SUCCEEDED (cleanup cuts what is left), as the Lambda does."""
    client = redis.Redis.from_url(redis_url)
    servers = StuckServers(client, {"s1": 4})
    hook = paced_hook(window_s=5, clock=servers.clock, sleep=servers.sleep)

    hook(FakeTwin(SETTINGS, FakeRegistry(redis_url)), ("s1",))  # type: ignore[arg-type]

    assert hook.calls[0].notices == ("s1",)
    assert [c.status for c in hook.calls][-1] == "SUCCEEDED"
    assert hook.calls[-1].at_s == 5.0
    assert hook.calls[-1].blue_connections == 4
    assert sum(servers.sleeps) == 5.0
    client.close()


def test_unset_values_come_from_the_twin_settings_and_given_ones_win() -> None:
    """The hook's pace, window and done threshold are the settings the Lambda gets as variables, unless given;
    ECS's longest call-back wait (30 s) is scaled by the twin's time scale, in whole seconds, at least 1."""
    assert config_from_settings(SETTINGS) == config_from_settings(
        SETTINGS, pace_per_s=3, window_s=60, done_connections=0
    )
    given = config_from_settings(SETTINGS, pace_per_s=50, window_s=9, done_connections=2, time_scale=0.05)
    assert (given.pace_per_s, given.window_s, given.drain_window_s, given.done_connections) == (50.0, 9.0, 2.0, 2)
    assert [max_callback_s(f) for f in (1.0, 0.1, 0.05, 0.001)] == [30, 3, 2, 1]
    assert given.max_callback_s == 2
