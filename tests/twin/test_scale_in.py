"""The twin's ECS agent endpoint and its model of ECS's scale-in choice, without servers."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import pytest

from stickyws.server.task_protection import put_state
from stickyws.twin.scale_in import Task, availability_zone, ecs_choice
from stickyws.twin.task_agent import TaskAgent


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def _request(agent: TaskAgent, name: str, method: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(agent.uri(name) + "/task-protection/v1/state", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def agent() -> Any:
    clock = Clock()
    agent = TaskAgent(clock=clock).start()
    agent.clock = clock  # type: ignore[attr-defined]
    yield agent
    agent.stop()


def test_the_agent_records_protection_per_server_until_it_expires(agent: Any) -> None:
    """s1 protected for 2 min is protected at 119 s and released at 120 s; s2 never asked and stays unprotected."""
    assert put_state(agent.uri("s1"), True, 2).ok
    assert agent.protected_names() == {"s1"}
    agent.clock.now += 119
    assert agent.protected("s1")
    assert not agent.protected("s2")
    agent.clock.now += 1
    assert agent.protected_names() == set()


def test_the_agent_answers_the_documented_shapes(agent: Any) -> None:
    """PUT and GET answer {"protection": ...}; a release clears it; 120 min is the default expiry."""
    status, body = _request(agent, "s1", "PUT", {"ProtectionEnabled": True})
    assert status == 200
    assert body["protection"]["ProtectionEnabled"] is True
    assert body["protection"]["TaskArn"] == "arn:aws:ecs:local:000000000000:task/twin/s1"
    agent.clock.now += 120 * 60 - 1
    assert _request(agent, "s1", "GET")[1]["protection"]["ProtectionEnabled"] is True
    status, body = _request(agent, "s1", "PUT", {"ProtectionEnabled": False})
    assert (status, body["protection"]["ProtectionEnabled"], body["protection"]["ExpirationDate"]) == (200, False, None)
    assert [(c.name, c.enabled, c.expires_min) for c in agent.calls] == [("s1", True, None), ("s1", False, None)]


@pytest.mark.parametrize(
    "body",
    [{"ExpiresInMinutes": 5}, {"ProtectionEnabled": True, "ExpiresInMinutes": 0},
     {"ProtectionEnabled": True, "ExpiresInMinutes": 2881}, {"ProtectionEnabled": "yes"}],
)  # fmt: skip
def test_the_agent_refuses_what_ecs_refuses(agent: Any, body: dict[str, Any]) -> None:
    """A missing or non-boolean ProtectionEnabled, or ExpiresInMinutes outside 1..2880, is a 400 error."""
    status, answer = _request(agent, "s1", "PUT", body)
    assert status == 400
    assert answer["error"]["Code"] == "InvalidParameterException"
    assert agent.calls == []
    assert not put_state(agent.uri("s1"), True, 0).ok


def test_servers_alternate_between_two_zones() -> None:
    """s1 and s3 are in az-1, s2 and s4 in az-2."""
    assert [availability_zone(f"s{i}") for i in range(1, 5)] == ["az-1", "az-2", "az-1", "az-2"]


def test_protected_servers_are_never_chosen() -> None:
    """With s1 and s2 protected, every seed stops s3."""
    tasks = [Task("s1", "az-1", 12, True), Task("s2", "az-2", 6, True), Task("s3", "az-1", 2, False)]
    assert {tuple(ecs_choice(tasks, 1, random.Random(seed))) for seed in range(200)} == {("s3",)}


def test_without_protection_zone_balance_then_chance_decides() -> None:
    """Unprotected s1 (12), s2 (6), s3 (2): the zone with two servers loses one, s1 or s3 about equally often."""
    tasks = [Task("s1", "az-1", 12, False), Task("s2", "az-2", 6, False), Task("s3", "az-1", 2, False)]
    picks = Counter(ecs_choice(tasks, 1, random.Random(seed))[0] for seed in range(1000))
    assert set(picks) == {"s1", "s3"}
    assert 400 < picks["s1"] < 600


def test_a_scale_in_larger_than_the_unprotected_servers_stops_only_those() -> None:
    """Asked for two with one unprotected server, the choice holds that one (ECS waits for the other)."""
    tasks = [Task("s1", "az-1", 12, True), Task("s2", "az-2", 6, True), Task("s3", "az-1", 2, False)]
    assert ecs_choice(tasks, 2, random.Random(0)) == ["s3"]


def test_two_stops_keep_the_zones_balanced() -> None:
    """Four unprotected servers, two per zone: a scale-in by two takes one from each zone, for every seed."""
    tasks = [Task(f"s{i}", availability_zone(f"s{i}"), i, False) for i in range(1, 5)]
    for seed in range(100):
        chosen = ecs_choice(tasks, 2, random.Random(seed))
        assert sorted(availability_zone(n) for n in chosen) == ["az-1", "az-2"]


class _FakeCluster:
    def __init__(self) -> None:
        self.asked: list[int] = []

    def scale_in(self, count: int) -> Any:
        self.asked.append(count)

        class Report:
            def render(self) -> str:
                return f"scale-in by {count}"

        return Report()


def test_the_twin_command_scale_in_stops_one_or_n_servers_and_prints_the_report() -> None:
    """`scale-in` asks for one server, `scale-in 2` for two; `scale-in 0` or `scale-in x` is refused with help."""
    from stickyws.twin.cli import execute

    cluster, said = _FakeCluster(), []
    for words in (["scale-in"], ["scale-in", "2"], ["scale-in", "0"], ["scale-in", "x"]):
        assert execute(cluster, words, said.append) == "ok"
    assert cluster.asked == [1, 2]
    assert said[:2] == ["scale-in by 1", "scale-in by 2"]
    assert said[2].startswith("unknown command 'scale-in 0'")
    assert "scale-in [N]" in said[3]
