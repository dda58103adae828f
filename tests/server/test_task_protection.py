"""Scale-in protection against a fake ECS agent on 127.0.0.1: the calls, their answers, and the server's wiring."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from stickyws import keys
from stickyws.localproc import free_port
from stickyws.registry.memory import InMemoryRegistry
from stickyws.server.protection import Action, ProtectionPolicy
from stickyws.server.task_protection import ENV_ECS_AGENT_URI, STATE_PATH, TaskProtection, put_state, read_answer
from stickyws.server.upkeep import heartbeat_body
from tests.server.helpers import connect, eventually, fast, run, server
from tests.server.registries import Admin


class FakeAgent:
    """The agent's ``task-protection/v1/state`` on a loopback port: records each PUT body, answers as ECS does."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        #: When set, the agent refuses with this failure reason.
        self.refuse: str | None = None
        self.port = 0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/agent"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        if self.refuse is not None:
            failure = {"Arn": "arn:aws:ecs:task/t", "Reason": self.refuse, "Detail": None}
            return web.json_response({"failure": failure}, status=400)
        protection = {"ProtectionEnabled": body["ProtectionEnabled"], "ExpirationDate": "2026-12-06T15:00:00Z",
                      "TaskArn": "arn:aws:ecs:task/t"}  # fmt: skip
        return web.json_response({"protection": protection})


@asynccontextmanager
async def fake_agent() -> AsyncIterator[FakeAgent]:
    agent = FakeAgent()
    app = web.Application()
    app.router.add_put("/agent" + STATE_PATH, agent.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    agent.port = free_port()
    await web.TCPSite(runner, "127.0.0.1", agent.port).start()
    try:
        yield agent
    finally:
        await runner.cleanup()


def _protection(agent_uri: str | None, registry: InMemoryRegistry, connections: list[int]) -> TaskProtection:
    policy = ProtectionPolicy(server_id="s1", expires_min=15, unprotected_percent=25)
    return TaskProtection(
        policy=policy, agent_uri=agent_uri, enabled=True, heartbeats=registry.server_heartbeats,
        connections=lambda: connections[0], draining=lambda: False, interval_s=0.05,
    )  # fmt: skip


async def _fleet(registry: InMemoryRegistry, **connections: int) -> None:
    for sid, n in connections.items():
        await registry.heartbeat(sid, heartbeat_body(sid, n, "serving", 1), 60)


def test_put_state_sends_the_documented_body_and_reads_the_protection() -> None:
    """A protect PUTs ProtectionEnabled and ExpiresInMinutes; a release PUTs ProtectionEnabled false alone."""

    async def scenario() -> None:
        async with fake_agent() as agent:
            protect = await asyncio.to_thread(put_state, agent.uri, True, 15)
            release = await asyncio.to_thread(put_state, agent.uri, False, None)
            assert agent.bodies == [{"ProtectionEnabled": True, "ExpiresInMinutes": 15}, {"ProtectionEnabled": False}]
            assert protect.ok
            assert protect.detail == "ProtectionEnabled=True until 2026-12-06T15:00:00Z"
            assert release.ok

    run(scenario())


def test_refusals_and_errors_are_read_as_failures_with_their_reason() -> None:
    """A failure body, an error body, and a bare 500 are failures that say what the agent said."""
    failure = read_answer(400, json.dumps({"failure": {"Arn": "a", "Reason": "TASK_NOT_VALID", "Detail": None}}))
    error = read_answer(500, json.dumps({"error": {"Arn": "a", "Code": "AccessDeniedException", "Message": "no"}}))
    bare = read_answer(500, "oops")
    assert (failure.ok, error.ok, bare.ok) == (False, False, False)
    assert "TASK_NOT_VALID" in failure.detail
    assert "AccessDeniedException: no" in error.detail
    assert bare.detail == "the ECS agent answered HTTP 500: oops"


def test_a_busy_server_protects_and_releases_at_drain_through_the_agent() -> None:
    """Of s1 (12), s2 (6), s3 (2), s1 protects on its second step and releases when it drains."""

    async def scenario() -> None:
        registry = InMemoryRegistry()
        await _fleet(registry, s1=12, s2=6, s3=2)
        async with fake_agent() as agent:
            protection = _protection(agent.uri, registry, [12])
            assert (await protection.step()).action is Action.NONE
            assert (await protection.step()).action is Action.PROTECT
            assert (await protection.release()).action is Action.RELEASE
            assert (await protection.step()).action is Action.NONE
            assert (await protection.shutdown()).action is Action.NONE
            assert agent.bodies == [{"ProtectionEnabled": True, "ExpiresInMinutes": 15}, {"ProtectionEnabled": False}]

    run(scenario())


def test_an_unreachable_agent_is_logged_once_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """Five failed protects log one warning line that names the permission, and no traceback."""

    async def scenario() -> None:
        registry = InMemoryRegistry()
        await _fleet(registry, s1=12, s2=6, s3=2)
        protection = _protection(f"http://127.0.0.1:{free_port()}", registry, [12])
        for _ in range(6):
            await protection.step()
        assert len(protection.calls) == 5
        assert protection.policy.protected is False

    with caplog.at_level(logging.DEBUG, logger="stickyws.server"):
        run(scenario())
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "ecs:UpdateTaskProtection" in warnings[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)


def test_without_the_agent_or_with_the_setting_off_nothing_is_called() -> None:
    """No ECS_AGENT_URI, or scale_in_protection off: the protection is inactive and makes no call."""

    async def scenario() -> None:
        registry = InMemoryRegistry()
        await _fleet(registry, s1=12, s2=6, s3=2)
        async with fake_agent() as agent:
            absent = _protection(None, registry, [12])
            off = _protection(agent.uri, registry, [12])
            off.enabled = False
            for p in (absent, off):
                assert not p.active
                assert [(await p.step()).action for _ in range(3)] == [Action.NONE] * 3
            assert agent.bodies == []

    run(scenario())


def test_the_server_protects_itself_when_busy_and_releases_when_it_drains(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reference server with ECS_AGENT_URI, one client and an idle peer protects itself, then releases at drain."""

    async def scenario() -> None:
        registry = InMemoryRegistry()
        await _fleet(registry, idle=0)
        async with fake_agent() as agent:
            monkeypatch.setenv(ENV_ECS_AGENT_URI, agent.uri)
            settings = fast(scale_in_protection_expires_min=5)
            async with server(settings, registry=registry, server_id="busy") as rs, aiohttp.ClientSession() as http:
                ws, _ = await connect(http, rs, "alice")
                await eventually(lambda: len(agent.bodies) == 1, timeout_s=3)
                assert agent.bodies == [{"ProtectionEnabled": True, "ExpiresInMinutes": 5}]
                rs.core.begin_drain("test", "scale-in")
                await eventually(lambda: len(agent.bodies) == 2, timeout_s=3)
                assert agent.bodies[1] == {"ProtectionEnabled": False}
                await ws.close()

    run(scenario())


@pytest.mark.redis
def test_server_heartbeats_lists_every_stored_heartbeat(registry_url: str, admin: Admin) -> None:
    """On one redis-server and on a Redis Cluster, every live heartbeat comes back by server id, read through the
    index (no keyspace scan), and an expired one is pruned from the index."""
    from stickyws.registry.redis_registry import RedisRegistry

    async def scenario() -> None:
        reg = RedisRegistry(registry_url)
        try:
            bodies = {f"srv-{i}": heartbeat_body(f"srv-{i}", i, "serving", 1) for i in range(12)}
            for sid, body in bodies.items():
                await reg.heartbeat(sid, body, 60)
            assert await reg.server_heartbeats() == bodies
            # A heartbeat that ran out leaves the index at the next read.
            admin.client.delete(keys.heartbeat_key("srv-0"))
            del bodies["srv-0"]
            assert await reg.server_heartbeats() == bodies
            assert admin.client.zscore(keys.heartbeat_index_key(), "srv-0") is None
            assert 0 < admin.client.ttl(keys.heartbeat_index_key()) <= 60
            await reg.heartbeat("srv-1", heartbeat_body("srv-1", 1, "stopped", 2), 1)  # a server's last beat
            assert admin.client.ttl(keys.heartbeat_index_key()) > 1
        finally:
            await reg.close()

    run(scenario())


def test_memory_registry_heartbeats_expire_with_their_ttl() -> None:
    """The in-memory registry lists a heartbeat until its TTL runs out."""

    async def scenario() -> None:
        now = [0.0]
        registry = InMemoryRegistry(clock=lambda: now[0])
        await registry.heartbeat("a", "A", 5)
        await registry.heartbeat("b", "B", 10)
        now[0] = 6.0
        assert await registry.server_heartbeats() == {"b": "B"}

    run(scenario())
