"""Drain: every trigger (Redis notice, SIGTERM, task metadata, DescribeTargetHealth), spread and deadline.

Every test that takes ``registry_url`` runs twice: on one redis-server and on a local Redis Cluster. The
spread, the deadline and the AWS triggers do not touch the registry and run on the in-memory one.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from stickyws import keys, protocol
from stickyws.localproc import free_port, stop_pid, wait_for_port
from stickyws.server import drain as drain_plan
from stickyws.server import triggers
from stickyws.server.identity import resolve_server_id
from tests.server.helpers import SECRET, connect, eventually, fast, recv_json, run, server, token, url
from tests.server.registries import Admin


def _notice(server_id: str, source: str = "ecs-task-state-change") -> keys.DrainNotice:
    return keys.DrainNotice(server_id=server_id, source=source, reason="Scaling activity initiated")


async def _expect_reconnect_then_1012(ws: aiohttp.ClientWebSocketResponse) -> tuple[float, dict[str, Any]]:
    frame = await recv_json(ws, timeout_s=5)
    at = asyncio.get_running_loop().time()
    assert frame["type"] == "reconnect"
    assert frame["reason"] == "server_draining"
    msg = await ws.receive(timeout=3)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, protocol.CLOSE_SERVICE_RESTART)
    return at, frame


def test_redis_drain_notice_drains_the_server(registry_url: str, admin: Admin) -> None:
    """A notice stored and published as the drain notifier does makes the server drain: heartbeat says
    draining, /health 503, handshakes 503, each client gets reconnect then 1012, ws:reconnect:{user} is published."""
    r = admin.client

    async def go() -> None:
        async with server(redis_url=registry_url, server_id="task-1") as rs, aiohttp.ClientSession() as http:
            clients = [(await connect(http, rs, f"user-{i}"))[0] for i in range(3)]
            pubsub = admin.pubsub()
            pubsub.subscribe(*(keys.reconnect_channel(f"user-{i}") for i in range(3)))
            await eventually(lambda: admin.subscribers(keys.drain_key("task-1")) == 1)
            notice = _notice("task-1")
            r.set(keys.drain_key("task-1"), notice.to_json(), ex=keys.DRAIN_NOTICE_TTL_S)
            admin.publish(keys.drain_key("task-1"), notice.to_json())
            await eventually(lambda: rs.core.draining, timeout_s=2)
            async with http.get(url(rs, "/health")) as resp:
                body = await resp.json()
                assert (resp.status, body["draining"], body["status"]) == (503, True, "draining")
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url(rs, token=token("late")))
            assert refused.value.status == 503
            await eventually(lambda: json.loads(r.get(keys.heartbeat_key("task-1")))["status"] == "draining")
            for ws in clients:
                await _expect_reconnect_then_1012(ws)
            await rs.core.wait_drained(3)
            published = []  # a hint: a publication the cluster client retried after a timeout can come twice
            deadline = time.monotonic() + 5
            while {p["userId"] for p in published} != {"user-0", "user-1", "user-2"} and time.monotonic() < deadline:
                msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if msg:
                    published.append(json.loads(msg["data"]))
            assert {p["userId"] for p in published} == {"user-0", "user-1", "user-2"}
            assert {(p["serverId"], p["reason"]) for p in published} == {("task-1", "server_draining")}
            pubsub.close()
            lines = [json.loads(line) for line in rs.core.metrics.out.getvalue().splitlines()]
            assert any("DrainSeconds" in line for line in lines)

    run(go())


def test_notice_stored_before_start_is_not_missed(registry_url: str, admin: Admin) -> None:
    """A notice stored (and published) while the server was not subscribed still drains it at start."""
    admin.client.set(keys.drain_key("task-2"), _notice("task-2").to_json(), ex=60)

    async def go() -> None:
        async with server(redis_url=registry_url, server_id="task-2") as rs:
            await eventually(lambda: rs.core.draining, timeout_s=2)

    run(go())


def _heartbeats_after(admin: Admin, server_id: str, count: int) -> Any:
    """A check that is true once ``server_id`` has written ``count`` more heartbeats (each has a new ``ts``)."""
    seen: set[Any] = set()

    def check() -> bool:
        text = admin.client.get(keys.heartbeat_key(server_id))
        if text is not None:
            seen.add(json.loads(text)["ts"])
        return len(seen) > count

    return check


def test_notice_key_without_publish_is_found_by_the_heartbeat(registry_url: str, admin: Admin) -> None:
    """A notice key written while the subscription was down (no publish seen) is found within a heartbeat."""

    async def go() -> None:
        async with server(redis_url=registry_url, server_id="task-3") as rs:
            await eventually(lambda: admin.subscribers(keys.drain_key("task-3")) == 1)
            assert not rs.core.draining
            admin.client.set(keys.drain_key("task-3"), _notice("task-3").to_json(), ex=60)
            await eventually(lambda: rs.core.draining, timeout_s=1)

    run(go())


def test_notice_for_another_server_is_ignored(registry_url: str, admin: Admin) -> None:
    """A notice for another server id, stored and published, does not drain this one: it listens on its own
    channel only, and its heartbeats go on reading its own key."""

    async def go() -> None:
        async with server(redis_url=registry_url, server_id="task-4") as rs:
            await eventually(lambda: admin.subscribers(keys.drain_key("task-4")) == 1)
            admin.client.set(keys.drain_key("task-9"), _notice("task-9").to_json(), ex=60)
            admin.publish(keys.drain_key("task-9"), _notice("task-9").to_json())
            assert admin.subscribers(keys.drain_key("task-9")) == 0
            await eventually(_heartbeats_after(admin, "task-4", 2))
            assert not rs.core.draining

    run(go())


def test_reconnect_instructions_are_spread_across_the_window() -> None:
    """Ten clients drained over a 1 s window are told one per 0.1 s slot, not all at once."""

    async def go() -> None:
        async with server(fast(drain_window_s=1)) as rs, aiohttp.ClientSession() as http:
            clients = [(await connect(http, rs, f"u{i}"))[0] for i in range(10)]
            t0 = asyncio.get_running_loop().time()
            rs.core.begin_drain("test")
            start = rs.core.drain_run.started_at
            arrivals = sorted(
                [at - t0 for at, _ in await asyncio.gather(*(_expect_reconnect_then_1012(ws) for ws in clients))]
            )
            offsets = sorted(at - start for at, _ in rs.core.reconnects_sent)
            assert len(offsets) == 10
            for i, offset in enumerate(offsets):  # exactly one instruction per 0.1 s slot
                assert i * 0.1 <= offset < (i + 1) * 0.1 + 0.05, (i, offsets)
            assert arrivals[-1] - arrivals[0] > 0.6  # the clients saw the spread too
            assert arrivals[-1] < 1.5
            await rs.core.wait_drained(2)

    run(go())


def test_sigterm_during_a_long_notice_drain_squeezes_the_rest_into_shutdown_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A notice drain spread over 30 s is cut short by SIGTERM: every client still left is told within
    shutdown_timeout_s (2 s), and the server may exit then."""
    planned = asyncio.Event()

    def plan(conn_ids: Any, window_s: float, rng: Any, **kw: Any) -> drain_plan.DrainPlan:
        planned.set()
        return make_plan(conn_ids, window_s, rng, **kw)

    make_plan = drain_plan.plan
    monkeypatch.setattr(drain_plan, "plan", plan)

    async def go() -> None:
        settings = fast(drain_window_s=30, shutdown_timeout_s=2)
        async with server(settings) as rs, aiohttp.ClientSession() as http:
            clients = [(await connect(http, rs, f"u{i}"))[0] for i in range(8)]
            rs.core.begin_drain("ecs-task-state-change")
            async with asyncio.timeout(2):  # the drain has spread the 8 clients over 30 s and waits for a slot
                await planned.wait()
            told_before = len(rs.core.reconnects_sent)
            assert told_before <= 1  # 30 s / 8: the first slot ends at 3.75 s
            t0 = asyncio.get_running_loop().time()
            rs.core.begin_drain("sigterm", sigterm=True)
            await asyncio.gather(*(_expect_reconnect_then_1012(ws) for ws in clients))
            assert asyncio.get_running_loop().time() - t0 < 2.0
            await asyncio.wait_for(rs.core.wait_stopped(), 2.5)

    run(go())


def _serve(env_extra: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "STICKYWS_JWT_SECRET": SECRET, **env_extra}
    return subprocess.Popen(
        [sys.executable, "-m", "stickyws.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _read_until_event(proc: subprocess.Popen[bytes], event: str, timeout_s: float) -> None:
    """Read ``proc``'s stdout until an audit line with ``event`` (fails after ``timeout_s``)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    buffered = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            lines = buffered.split(b"\n")
            if any(line.startswith(b"{") and json.loads(line).get("event") == event for line in lines[:-1]):
                return
            left = deadline - time.monotonic()
            assert left > 0, f"no {event!r} line on stdout within {timeout_s} s: {buffered[-500:]!r}"
            if sel.select(left):
                chunk = os.read(fd, 65536)
                assert chunk, f"stdout closed before a {event!r} line: {buffered[-500:]!r}"
                buffered += chunk


def test_sigterm_drains_within_shutdown_timeout_and_exits_0(redis_url: str) -> None:
    """SIGTERM on `stickyws serve`: clients get reconnect + 1012 within shutdown_timeout_s, exit code 0
    (one redis-server: SIGTERM asks nothing of the registry; the next test drains a served process on both)."""
    port = free_port()
    proc = _serve(
        {"REDIS_URL": redis_url, "STICKYWS_SERVER_ID": "sig-1", "STICKYWS_DRAIN_WINDOW_S": "30",
         "STICKYWS_SHUTDOWN_TIMEOUT_S": "2", "STICKYWS_HEARTBEAT_INTERVAL_S": "0.2", "STICKYWS_HEARTBEAT_TTL_S": "2"},
        port,
    )  # fmt: skip
    try:
        wait_for_port(port, 10)

        async def go() -> None:
            async with aiohttp.ClientSession() as http:
                base = f"http://127.0.0.1:{port}"
                clients = [await http.ws_connect(f"{base}/ws?token={token(f'u{i}')}") for i in range(4)]
                for ws in clients:
                    assert (await recv_json(ws))["type"] == "connected"
                t0 = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                for ws in clients:
                    await _expect_reconnect_then_1012(ws)
                assert time.monotonic() - t0 < 2.0

        run(go())
        assert proc.wait(timeout=5) == 0
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert "Traceback" not in err
        out = proc.stdout.read().decode() if proc.stdout else ""
        events = [json.loads(line).get("event") for line in out.splitlines() if line.startswith("{")]
        assert [e for e in events if e in {"drain_start", "drain_end", "server_stop"}] == [
            "drain_start",
            "drain_end",
            "server_stop",
        ]
    finally:
        stop_pid(proc)


def test_sigterm_after_a_notice_drain_exits_0_at_once(registry_url: str, admin: Admin) -> None:
    """A server drained by a notice stays up (health 503) until SIGTERM, then exits 0 at once."""
    port = free_port()
    proc = _serve({"REDIS_URL": registry_url, "STICKYWS_SERVER_ID": "sig-2", "STICKYWS_DRAIN_WINDOW_S": "0.2"}, port)
    try:
        wait_for_port(port, 10)
        admin.client.set(keys.drain_key("sig-2"), _notice("sig-2").to_json(), ex=60)
        admin.publish(keys.drain_key("sig-2"), _notice("sig-2").to_json())

        async def health() -> int:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as resp:
                return resp.status

        async def drained() -> bool:
            return await health() == 503

        run(eventually(drained, timeout_s=3))
        _read_until_event(proc, "drain_end", timeout_s=3)
        assert proc.poll() is None  # drained but still up: only SIGTERM ends it
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - t0 < 1.5
    finally:
        stop_pid(proc)


def _metadata_app(state: dict[str, Any]) -> web.Application:
    """The task metadata endpoint answering from ``state``; ``state["polls"]`` counts the requests."""

    async def task(_: web.Request) -> web.Response:
        state["polls"] = state.get("polls", 0) + 1
        return web.json_response(
            {
                "TaskARN": "arn:aws:ecs:eu-west-1:123456789012:task/ws-cluster/0f1e2d3c4b5a",
                "DesiredStatus": state["desired"],
                "KnownStatus": "RUNNING",
                "Containers": [{"Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.1.5"]}]}],
            }
        )

    app = web.Application()
    app.router.add_get("/task", task)
    return app


def test_task_metadata_desired_stopped_triggers_drain() -> None:
    """A (fake, loopback) task metadata endpoint gives the server id; DesiredStatus flipping to STOPPED drains."""
    state: dict[str, Any] = {"desired": "RUNNING"}

    async def go() -> None:
        runner = web.AppRunner(_metadata_app(state))
        await runner.setup()
        port = free_port()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        base = f"http://127.0.0.1:{port}"
        try:
            server_id = await asyncio.to_thread(resolve_server_id, {"ECS_CONTAINER_METADATA_URI_V4": base})
            assert server_id == "0f1e2d3c4b5a"
            async with server(server_id=server_id) as rs:
                fired: list[tuple[str, str]] = []

                def on_drain(source: str, reason: str) -> None:
                    fired.append((source, reason))
                    rs.core.begin_drain(source, reason)

                polls = state["polls"]  # resolve_server_id read it too
                watcher = asyncio.create_task(triggers.watch_task_metadata(base, on_drain, interval_s=0.05))
                await eventually(lambda: state["polls"] >= polls + 3)  # three polls saw RUNNING
                assert not rs.core.draining
                state["desired"] = "STOPPED"
                await asyncio.wait_for(watcher, 2)
                assert fired[0][0] == "task-metadata"
                assert rs.core.draining
        finally:
            await runner.cleanup()

    run(go())


class _CountingElb:
    """An elbv2 client that counts the DescribeTargetHealth answers it passes on (``polls``)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.polls = 0

    def describe_target_health(self, **kwargs: Any) -> Any:
        reply = self.client.describe_target_health(**kwargs)
        self.polls += 1
        return reply


@pytest.fixture(scope="module")
def aws_vpc():
    """moto's mock of AWS with fake credentials (nothing leaves the process) and one VPC, shared by this
    module's AWS tests (moto's EC2 backend takes about a second to build)."""
    import boto3
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }.items():
            mp.setenv(name, value)
        mp.delenv("AWS_PROFILE", raising=False)
        with mock_aws():
            yield boto3.client("ec2").create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]


def test_describe_target_health_ip_target_deregistered_triggers_drain(aws_vpc: str) -> None:
    """moto 5.2.5 reports a deregistered IP target as `unused`/`Target.NotRegistered` (never `draining`);
    the poller, having seen the target registered, takes that as deregistration and drains."""
    import boto3

    elb = boto3.client("elbv2")
    tg = elb.create_target_group(Name="ws", Protocol="HTTP", Port=8080, VpcId=aws_vpc, TargetType="ip")
    arn = tg["TargetGroups"][0]["TargetGroupArn"]
    target = {"Id": "10.0.1.5", "Port": 8080}
    elb.register_targets(TargetGroupArn=arn, Targets=[target])
    assert triggers.target_health(elb, arn, "10.0.1.5", 8080) == ("healthy", None)

    async def go() -> None:
        fired: list[str] = []
        counting = _CountingElb(elb)
        watcher = asyncio.create_task(
            triggers.watch_target_health(counting, arn, "10.0.1.5", 8080, lambda s, r: fired.append(r), interval_s=0.05)
        )
        await eventually(lambda: counting.polls >= 2)  # the poller has seen the target registered
        assert fired == []
        await asyncio.to_thread(elb.deregister_targets, TargetGroupArn=arn, Targets=[target])
        assert await asyncio.to_thread(triggers.target_health, elb, arn, "10.0.1.5", 8080) == (
            "unused",
            "Target.NotRegistered",
        )
        await asyncio.wait_for(watcher, 2)
        assert fired == ["target 10.0.1.5:8080 was deregistered"]

    run(go())


def test_describe_target_health_draining_triggers_drain(aws_vpc: str) -> None:
    """moto reports `draining` for an instance target whose instance was terminated; the poller drains on it."""
    import boto3

    ec2, elb = boto3.client("ec2"), boto3.client("elbv2")
    tg = elb.create_target_group(Name="ws-i", Protocol="HTTP", Port=8080, VpcId=aws_vpc, TargetType="instance")
    arn = tg["TargetGroups"][0]["TargetGroupArn"]
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance, "Port": 8080}])

    async def go() -> None:
        fired: list[str] = []
        counting = _CountingElb(elb)
        watcher = asyncio.create_task(
            triggers.watch_target_health(counting, arn, instance, 8080, lambda s, r: fired.append(s), interval_s=0.05)
        )
        await eventually(lambda: counting.polls >= 2)  # two polls saw the target healthy
        assert fired == []
        await asyncio.to_thread(ec2.terminate_instances, InstanceIds=[instance])
        assert (await asyncio.to_thread(triggers.target_health, elb, arn, instance, 8080))[0] == "draining"
        await asyncio.wait_for(watcher, 2)
        assert fired == ["target-health"]

    run(go())
