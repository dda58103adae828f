"""The backend's ways in: the HTTP publish endpoint and `stickyws publish`, with good and bad input."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
import redis

from stickyws.localproc import free_port
from stickyws.publish import Publisher, PublishError, SyncPublisher
from stickyws.server.app import ServerConfig, build_core
from stickyws.server.ws_adapter import RunningServer
from tests.server.helpers import SECRET, connect, fast, recv_json, run

KEY = "publish-key-for-tests-0123456789"


def _stored_keys(redis_url: str) -> list[bytes]:
    """Every registry key but the servers' heartbeats."""
    r = redis.Redis.from_url(redis_url)
    try:
        return sorted(k for k in r.keys("*") if not k.endswith(b":heartbeat"))
    finally:
        r.close()


def test_http_publish_endpoint_answers_and_refuses_with_json(redis_url: str) -> None:
    """POST /v1/publish delivers with the key, and answers 401/403/400/413 as JSON without storing anything."""

    async def go() -> list[tuple[int, Any]]:
        config = ServerConfig(fast(), SECRET, redis_url, "srv-p", None, False, publish_key=KEY)
        core = build_core(config)
        rs = await RunningServer(core, "127.0.0.1", free_port(), publish_key=KEY, publish_port=free_port()).start()
        answers = []
        try:
            endpoint = f"http://127.0.0.1:{rs.publish_port}/v1/publish"
            auth = {"Authorization": f"Bearer {KEY}"}
            async with aiohttp.ClientSession() as http:
                for headers, body in (
                    ({}, b'{"topic":"t","data":1}'),
                    ({"Authorization": "Bearer wrong"}, b'{"topic":"t","data":1}'),
                    (auth, b"{not json"),
                    (auth, b'{"topic":"t","user":"u","data":1}'),
                    (auth, b'{"topic":"","data":1}'),
                    (auth, json.dumps({"topic": "t", "data": "x" * 70_000}).encode()),
                ):
                    async with http.post(endpoint, data=body, headers=headers) as resp:
                        answers.append((resp.status, (await resp.json())["error"]))
                assert _stored_keys(redis_url) == []
                ws, _ = await connect(http, rs, "alice")
                async with http.post(endpoint, json={"user": "alice", "data": {"hi": 1}}, headers=auth) as resp:
                    answers.append((resp.status, await resp.json()))
                assert await recv_json(ws) == {"type": "message", "seq": 1, "data": {"hi": 1}}
                hdr = {"X-Stickyws-Publish-Key": KEY}
                async with http.post(endpoint, json={"topic": "t", "data": 2}, headers=hdr) as resp:
                    body = await resp.json()
                    answers.append((resp.status, (body["topic"], body["offset"])))
                no_session = {"user": "nobody", "data": 1, "requireSession": True}
                async with http.post(endpoint, json=no_session, headers=auth) as resp:
                    answers.append((resp.status, (await resp.json())["error"]))
        finally:
            await rs.stop()
        return answers

    answers = run(go())
    sent = answers[6][1]
    assert answers[:6] == [
        (401, "missing_key"),
        (403, "invalid_key"),
        (400, "bad_json"),
        (400, "bad_request"),
        (400, "bad_topic"),
        (413, "too_large"),
    ]
    assert answers[6] == (200, {"status": "sent", "seq": 1, "sessionId": sent["sessionId"], "serverId": "srv-p"})
    assert answers[7:] == [(200, ("t", 1)), (404, "no_session")]


def test_http_publish_endpoint_answers_503_when_the_registry_is_down(make_redis: Any) -> None:
    """With Redis stopped, a publish is a 503 registry_unavailable, not a hang or a 500."""
    rsrv = make_redis()

    async def go() -> tuple[int, str]:
        config = ServerConfig(fast(), SECRET, rsrv.url, "srv-q", None, False, publish_key=KEY)
        rs = await RunningServer(build_core(config), "127.0.0.1", free_port(), publish_key=KEY,
                                 publish_port=free_port()).start()  # fmt: skip
        try:
            rsrv.kill()
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"http://127.0.0.1:{rs.publish_port}/v1/publish",
                    json={"topic": "t", "data": 1},
                    headers={"Authorization": f"Bearer {KEY}"},
                ) as resp,
            ):
                return resp.status, (await resp.json())["error"]
        finally:
            await rs.stop()

    assert run(go()) == (503, "registry_unavailable")


def _cli(args: list[str], redis_url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "stickyws.cli", "publish", *args], capture_output=True, text=True, env=env, timeout=30
    )


def test_cli_publish_prints_what_was_assigned_and_fails_cleanly(redis_url: str, make_redis: Any) -> None:
    """`stickyws publish` prints the offset/epoch or seq; bad JSON, a too-large payload, a missing session
    with --require-session and a dead registry are one line on stderr and exit 2, with nothing stored."""
    ok = _cli(["--topic", "prices", '{"eur": 1.08}'], redis_url)
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout)
    assert (body["topic"], body["offset"]) == ("prices", 1)
    assert len(body["epoch"]) == 8
    assert json.loads(_cli(["--user", "nobody", "1"], redis_url).stdout)["status"] == "no_session"
    stored = _stored_keys(redis_url)
    dead = make_redis()
    dead_url = dead.url
    dead.kill()
    for args, url, expected in (
        (["--topic", "prices", "{nope"], redis_url, "JSON is not valid JSON"),
        (["--topic", "prices", json.dumps("x" * 70_000)], redis_url, "[too_large]"),
        (["--user", "nobody", "--require-session", "1"], redis_url, "[no_session]"),
        (["--topic", "prices", "1"], dead_url, "[registry_unavailable]"),
        (["--topic", "prices", "1"], None, "[registry_unavailable]"),
    ):
        res = _cli(args, url)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert res.stdout == ""
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert lines[0].startswith("stickyws: ")
        assert expected in lines[0]
    assert _stored_keys(redis_url) == stored


def test_sync_publisher_works_without_an_event_loop(redis_url: str) -> None:
    """SyncPublisher publishes from plain code (a script or a Lambda) and closes its thread."""
    with SyncPublisher(redis_url) as pub:
        first = pub.publish("sync", 1)
        second = pub.publish("sync", 2)
        assert pub.send_to_user("nobody", 1).status == "no_session"
    assert (first.offset, second.offset, first.epoch == second.epoch) == (1, 2, True)
    with pytest.raises(PublishError, match="no registry URL") as missing:
        Publisher(env={})
    assert missing.value.code == "registry_unavailable"


def test_an_idempotency_key_works_from_http_the_cli_and_the_sync_publisher(redis_url: str) -> None:
    """The same key from the HTTP endpoint, the CLI (--key) and SyncPublisher stores one message; an empty key
    is refused with bad_key."""

    async def go() -> list[tuple[int, Any]]:
        config = ServerConfig(fast(), SECRET, redis_url, "srv-k", None, False, publish_key=KEY)
        rs = await RunningServer(
            build_core(config), "127.0.0.1", free_port(), publish_key=KEY, publish_port=free_port()
        ).start()
        answers: list[tuple[int, Any]] = []
        try:
            endpoint = f"http://127.0.0.1:{rs.publish_port}/v1/publish"
            auth = {"Authorization": f"Bearer {KEY}"}
            async with aiohttp.ClientSession() as http:
                ws, _ = await connect(http, rs, "kai")
                for body in ({"user": "kai", "data": 1, "key": "a"}, {"user": "kai", "data": 1, "key": "a"},
                             {"user": "kai", "data": 1, "key": ""}):  # fmt: skip
                    async with http.post(endpoint, json=body, headers=auth) as resp:
                        answers.append((resp.status, await resp.json()))
                cli = await asyncio.to_thread(_cli, ["--user", "kai", "--key", "a", "1"], redis_url)
                answers.append((cli.returncode, json.loads(cli.stdout)))
                with SyncPublisher(redis_url) as pub:
                    again = await asyncio.to_thread(pub.send_to_user, "kai", 1, key="a")
                answers.append((0, (again.seq, again.duplicate)))
                assert await recv_json(ws) == {"type": "message", "seq": 1, "data": 1}
        finally:
            await rs.stop()
        return answers

    answers = run(go(), timeout_s=30)
    assert [(status, body.get("seq"), body.get("duplicate")) for status, body in answers[:2]] == [
        (200, 1, None), (200, 1, True),
    ]  # fmt: skip
    assert (answers[2][0], answers[2][1]["error"]) == (400, "bad_key")
    assert (answers[3][0], answers[3][1]["seq"], answers[3][1]["duplicate"]) == (0, 1, True)
    assert answers[4] == (0, (1, True))
