"""`stickyws serve --dev`: push through its publish endpoint with a printed throwaway key, metrics off the console."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from stickyws.localproc import free_port, pid_alive, stop_pid, wait_for_port
from stickyws.server.app import ServerConfig, open_metrics, with_dev_publish_key
from stickyws.server.metrics import Metrics
from stickyws.settings import ENV_JWT_SECRET, ENV_PUBLISH_KEY
from tests.lines import Stream
from tests.server.helpers import SECRET, fast, recv_json, run

BOUND_S = 20.0
#: Environment variables a test must not inherit: every setting, the keys, the registry.
_INHERITED = ("STICKYWS_", "REDIS_")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED)}
    return {**env, "PYTHONUNBUFFERED": "1", "STICKYWS_HEARTBEAT_INTERVAL_S": "0.2", **extra}


class Serve:
    """``stickyws serve ARGS`` on free loopback ports; stopped by PID (SIGTERM) on exit."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stickyws", "serve", "--port", str(self.port), *args],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.out = Stream(self.proc.stdout)
        self.err = Stream(self.proc.stderr)

    def __enter__(self) -> Serve:
        self.err.expect(r"^stickyws: serving ws://127\.0\.0\.1:\d+/ws")
        wait_for_port(self.port, BOUND_S)
        return self

    def stop(self) -> int:
        """SIGTERM (a drain), wait, and prove the process is gone; its exit code."""
        stop_pid(self.proc)  # type: ignore[arg-type]
        assert not pid_alive(self.proc.pid)
        self.out.rest()
        self.err.rest()
        return self.proc.returncode

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _emf(lines: list[str]) -> list[dict[str, Any]]:
    """The EMF documents among ``lines`` (JSON objects with an ``_aws`` block)."""
    docs = [json.loads(line) for line in lines if line.startswith("{")]
    return [doc for doc in docs if "_aws" in doc]


def _publish(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stickyws", "publish", *args], env=env, capture_output=True, text=True, timeout=BOUND_S
    )


def test_stickyws_publish_reaches_a_client_of_a_dev_server_through_the_printed_endpoint() -> None:
    """`serve --dev` prints a throwaway publish key and a ready `stickyws publish --endpoint` command; that
    command delivers to a connected client, and a wrong key is refused with one line and exit 2."""
    publish_port = free_port()
    with Serve("--dev", "--publish-port", str(publish_port), env=_env(STICKYWS_SERVER_ID="dev-1")) as server:
        banner = "\n".join(server.err.lines)
        tokens_for = re.search(rf"^stickyws:\s+Tokens for it: {ENV_JWT_SECRET}=(\S+) stickyws token", banner, re.M)
        push = re.search(
            rf"^stickyws:\s+Push: {ENV_PUBLISH_KEY}=(\S+) stickyws publish --endpoint (\S+) --user NAME (.+)$",
            banner,
            re.M,
        )
        assert tokens_for, banner
        assert push, banner
        secret = tokens_for[1]
        key, endpoint, example = push.groups()
        assert endpoint == f"http://127.0.0.1:{publish_port}"
        assert example == """'{"text":"hi"}'"""
        server.err.expect(rf"^stickyws: publish endpoint: POST {re.escape(endpoint)}/v1/publish$")
        token = jwt.encode({"sub": "alice", "aud": "stickyws", "exp": int(time.time()) + 600}, secret, "HS256")

        async def go() -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str], Any]:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(f"http://127.0.0.1:{server.port}/ws?token={token}")
                assert (await recv_json(ws))["type"] == "connected"
                sent = await asyncio.to_thread(
                    _publish, "--endpoint", endpoint, "--user", "alice", '{"text":"hi"}',
                    env=_env(**{ENV_PUBLISH_KEY: key}),
                )  # fmt: skip
                message = await recv_json(ws, timeout_s=BOUND_S)
                wrong = await asyncio.to_thread(
                    _publish, "--endpoint", endpoint, "--user", "alice", "2", env=_env(**{ENV_PUBLISH_KEY: "nope"})
                )
                await ws.close()
                return sent, wrong, message

        sent, wrong, message = run(go(), timeout_s=BOUND_S * 2)
        assert server.stop() == 0
    assert (sent.returncode, sent.stderr) == (0, "")
    body = json.loads(sent.stdout)
    assert (body["status"], body["seq"], body["serverId"]) == ("sent", 1, "dev-1")
    assert message == {"type": "message", "seq": 1, "data": {"text": "hi"}}
    assert (wrong.returncode, wrong.stdout, wrong.stderr) == (
        2,
        "",
        "stickyws: the publish key is not valid [invalid_key]\n",
    )
    assert "Traceback" not in "\n".join(server.err.lines)


def test_stickyws_publish_names_both_ways_when_nothing_says_where_to_push() -> None:
    """Without REDIS_URL and --endpoint, or with --endpoint but no key, or with nothing listening there,
    `stickyws publish` exits 2 with one line saying what to set."""
    nobody = f"http://127.0.0.1:{free_port()}"
    cases = (
        ([], {}, "stickyws: no registry URL: set REDIS_URL, or send through a server's publish endpoint with "
                 "--endpoint http://HOST:PORT and STICKYWS_PUBLISH_KEY (`stickyws serve --dev` prints both) "
                 "[registry_unavailable]"),
        (["--endpoint", nobody], {}, "stickyws: --endpoint needs the server's publish key in STICKYWS_PUBLISH_KEY "
                                     "(`stickyws serve --dev` prints it)"),
        (["--endpoint", "ftp://x"], {ENV_PUBLISH_KEY: "k"}, "stickyws: --endpoint 'ftp://x' is not http://HOST:PORT "
                                                            "(or http://HOST:PORT/v1/publish)"),
    )  # fmt: skip
    for args, extra, expected in cases:
        result = _publish(*args, "--topic", "t", "1", env=_env(**extra))
        assert (result.returncode, result.stdout, result.stderr) == (2, "", expected + "\n")
    refused = _publish("--endpoint", nobody, "--topic", "t", "1", env=_env(**{ENV_PUBLISH_KEY: "k"}))
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr.startswith(f"stickyws: cannot reach the publish endpoint {nobody}/v1/publish (")
    assert refused.stderr.count("\n") == 1


def test_dev_makes_a_publish_key_only_on_loopback_and_keeps_a_given_one() -> None:
    """The throwaway publish key is made for 127.0.0.1, ::1 and localhost only, and never replaces a set key."""
    config = ServerConfig(fast(), SECRET, None, "dev", None, True)
    for host in ("127.0.0.1", "::1", "localhost"):
        made = with_dev_publish_key(config, host)
        assert made.dev_publish_key is True
        assert len(made.publish_key or "") >= 32
    assert with_dev_publish_key(config, "0.0.0.0") == config
    assert with_dev_publish_key(config, "10.0.0.5") == config
    given = ServerConfig(fast(), SECRET, None, "dev", None, True, publish_key="mine")
    assert with_dev_publish_key(given, "127.0.0.1") == given


def test_dev_on_a_public_address_says_how_to_turn_the_publish_endpoint_on() -> None:
    """`serve --dev --host 0.0.0.0` makes no publish key and says which variable turns the endpoint on."""
    publish_port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stickyws", "serve", "--dev", "--host", "0.0.0.0", "--port", str(free_port()),
         "--publish-port", str(publish_port)],
        env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    err = Stream(proc.stderr)
    try:
        err.expect(r"^stickyws: serving ws://0\.0\.0\.0:\d+/ws")
    finally:
        stop_pid(proc)  # type: ignore[arg-type]
    lines = err.rest()
    assert proc.returncode == 0
    assert (
        f"stickyws: --dev: publish endpoint off: --dev makes a publish key only on a loopback --host; "
        f"set {ENV_PUBLISH_KEY} to serve it on 0.0.0.0:{publish_port}"
    ) in lines
    assert not any("publish endpoint: POST" in line for line in lines)


# Metrics: off the console in dev, to --metrics-file when asked, on stdout outside dev.


def test_dev_writes_no_metric_lines_on_stdout_by_default() -> None:
    """`serve --dev` without --metrics-file writes audit lines but no EMF line on stdout, also at its drain."""
    with Serve("--dev", "--publish-port", "0", env=_env()) as server:
        server.out.expect(r'"event":"server_start"')
        assert server.stop() == 0
    events = [json.loads(line)["event"] for line in server.out.lines]
    assert events == ["server_start", "drain_start", "drain_end", "server_stop"]  # DrainSeconds would be EMF
    assert (
        "stickyws: --dev: metrics (EMF) off; --metrics-file PATH writes them to PATH, --metrics-file - to stdout"
        in (server.err.lines)
    )


def test_dev_metrics_file_gets_every_flush_and_stdout_none(tmp_path: Path) -> None:
    """`serve --dev --metrics-file PATH` appends an EMF flush every heartbeat and DrainSeconds to PATH;
    stdout keeps the audit lines only."""
    path = tmp_path / "metrics.jsonl"
    with Serve("--dev", "--publish-port", "0", "--metrics-file", str(path), env=_env()) as server:
        deadline = time.monotonic() + BOUND_S
        while len(_emf(path.read_text().splitlines())) < 3:  # the heartbeat is 0.2 s
            assert time.monotonic() < deadline, path.read_text()
            time.sleep(0.05)
        assert server.stop() == 0
    docs = _emf(path.read_text().splitlines())
    assert {doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] for doc in docs} == {"StickyWebSocket"}
    assert sum("ActiveConnections" in doc for doc in docs) >= 3
    assert "DrainSeconds" in docs[-1]
    assert _emf(server.out.lines) == []
    assert any('"event":"server_stop"' in line for line in server.out.lines)


def test_outside_dev_metrics_stay_on_stdout_for_cloudwatch() -> None:
    """Without --dev the EMF lines go to stdout as before: a flush every heartbeat and DrainSeconds at the drain."""
    with Serve(env=_env(**{ENV_JWT_SECRET: SECRET})) as server:
        server.out.expect(r'"ActiveConnections"')
        server.out.expect(r'"ActiveConnections"')
        assert server.stop() == 0
    docs = _emf(server.out.lines)
    assert sum("ActiveConnections" in doc for doc in docs) >= 2
    assert "DrainSeconds" in docs[-1]


def test_an_unwritable_metrics_file_is_a_one_line_error(tmp_path: Path) -> None:
    """--metrics-file in a folder that does not exist stops serve with exit 2 and one line."""
    path = tmp_path / "missing" / "metrics.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "stickyws", "serve", "--dev", "--port", str(free_port()), "--metrics-file", str(path)],
        env=_env(), capture_output=True, text=True, timeout=BOUND_S,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"stickyws: cannot write --metrics-file {path}: No such file or directory; "
        "pass a writable path, or - for stdout"
    ]
    assert "Traceback" not in result.stderr


def test_metrics_send_emf_to_their_own_stream_or_nowhere() -> None:
    """Metrics write EMF to ``emf_out`` (audit lines to ``out``), or no EMF at all with ``emit_emf=False``
    while still resetting the counters at each flush."""
    out, emf = io.StringIO(), io.StringIO()
    split = Metrics("Ns", out=out, emf_out=emf, clock_ms=lambda: 1)
    split.count("MessagesIn", 2)
    split.flush(active_connections=1)
    split.drain_seconds(0.5)
    split.audit("route", user="u")
    assert [sorted(set(doc) - {"_aws"}) for doc in _emf(emf.getvalue().splitlines())][1] == ["DrainSeconds"]
    assert json.loads(emf.getvalue().splitlines()[0])["MessagesIn"] == 2
    assert out.getvalue() == '{"log":"audit","ts":1,"event":"route","user":"u"}\n'

    silent_out = io.StringIO()
    silent = Metrics("Ns", out=silent_out, emit_emf=False, clock_ms=lambda: 1)
    silent.count("MessagesIn", 5)
    silent.reject("bad_token")
    silent.lag(3.0)
    silent.flush(active_connections=1)
    silent.drain_seconds(0.5)
    assert silent_out.getvalue() == ""
    assert (sum(silent.counters.values()), len(silent.rejected), silent.lags) == (0, 0, [])


def test_open_metrics_resolves_the_destination_from_dev_and_metrics_file(tmp_path: Path) -> None:
    """No file: EMF on stdout outside dev and off in dev; '-': stdout in both; a path: appended to that file."""
    for dev, metrics_file, emits, to_file in (
        (False, None, True, False),
        (True, None, False, False),
        (True, "-", True, False),
        (False, "-", True, False),
        (True, str(tmp_path / "m.jsonl"), True, True),
    ):
        metrics, sink = open_metrics("Ns", None, dev=dev, metrics_file=metrics_file)
        assert (metrics.emit_emf, sink is not None, metrics.emf_out is sink) == (emits, to_file, True)
        if sink is not None:
            metrics.flush(active_connections=4)
            sink.close()
            assert json.loads((tmp_path / "m.jsonl").read_text())["ActiveConnections"] == 4
