"""The backend's ways in: the HTTP publish endpoint and `stickyws publish`, with good and bad input.

Every test that takes ``registry_url`` runs on one redis-server and on a local Redis Cluster; the
registry-down answers stop a redis-server of their own, which the shared cluster cannot do.
"""

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
from tests.server.registries import Admin

KEY = "publish-key-for-tests-0123456789"


def test_http_publish_endpoint_answers_and_refuses_with_json(registry_url: str, admin: Admin) -> None:
    """POST /v1/publish delivers with the key, and answers 401/403/400/413 as JSON without storing anything."""

    async def go() -> list[tuple[int, Any]]:
        config = ServerConfig(fast(), SECRET, registry_url, "srv-p", None, False, publish_key=KEY)
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
                assert admin.stored() == []
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
    """With Redis stopped, a publish is a 503 registry_unavailable, not a hang or a 500 (one redis-server only:
    the test kills its registry)."""
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


def _fails_cleanly(res: subprocess.CompletedProcess[str], expected: str) -> None:
    """``res`` exited 2 with nothing on stdout and one ``stickyws: ...`` line holding ``expected`` on stderr."""
    assert res.returncode == 2, (res.args, res.stdout, res.stderr)
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("stickyws: ")
    assert expected in lines[0]


def test_cli_publish_prints_what_was_assigned(registry_url: str, admin: Admin) -> None:
    """`stickyws publish` prints the offset/epoch or the push status; a missing session with --require-session
    is one line on stderr and exit 2, with nothing stored."""
    ok = _cli(["--topic", "prices", '{"eur": 1.08}'], registry_url)
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout)
    assert (body["topic"], body["offset"]) == ("prices", 1)
    assert len(body["epoch"]) == 8
    assert json.loads(_cli(["--user", "nobody", "1"], registry_url).stdout)["status"] == "no_session"
    stored = admin.stored()
    _fails_cleanly(_cli(["--user", "nobody", "--require-session", "1"], registry_url), "[no_session]")
    assert admin.stored() == stored


def test_cli_publish_refuses_bad_input_and_a_dead_registry_cleanly(redis_url: str, make_redis: Any) -> None:
    """Bad JSON, a too-large payload, a dead registry and no registry URL are one line on stderr and exit 2,
    with nothing stored (one redis-server only: none of these reaches a live registry's scripts)."""
    dead = make_redis()
    dead_url = dead.url
    dead.kill()
    for args, url, expected in (
        (["--topic", "prices", "{nope"], redis_url, "JSON is not valid JSON"),
        (["--topic", "prices", json.dumps("x" * 70_000)], redis_url, "[too_large]"),
        (["--topic", "prices", "1"], dead_url, "[registry_unavailable]"),
        (["--topic", "prices", "1"], None, "[registry_unavailable]"),
    ):
        _fails_cleanly(_cli(args, url), expected)
    with redis.Redis.from_url(redis_url) as r:
        assert r.keys("*") == []


def test_sync_publisher_works_without_an_event_loop(registry_url: str) -> None:
    """SyncPublisher publishes from plain code (a script or a Lambda) and closes its thread."""
    with SyncPublisher(registry_url) as pub:
        first = pub.publish("sync", 1)
        second = pub.publish("sync", 2)
        assert pub.send_to_user("nobody", 1).status == "no_session"
    assert (first.offset, second.offset, first.epoch == second.epoch) == (1, 2, True)
    with pytest.raises(PublishError, match="no registry URL") as missing:
        Publisher(env={})
    assert missing.value.code == "registry_unavailable"


def test_an_idempotency_key_works_from_http_the_cli_and_the_sync_publisher(registry_url: str) -> None:
    """The same key from the HTTP endpoint, the CLI (--key) and SyncPublisher stores one message; an empty key
    is refused with bad_key."""

    async def go() -> list[tuple[int, Any]]:
        config = ServerConfig(fast(), SECRET, registry_url, "srv-k", None, False, publish_key=KEY)
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
                cli = await asyncio.to_thread(_cli, ["--user", "kai", "--key", "a", "1"], registry_url)
                answers.append((cli.returncode, json.loads(cli.stdout)))
                with SyncPublisher(registry_url) as pub:
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
