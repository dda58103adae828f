"""The command line (`stickyws serve`, `stickyws token`) and what can be checked of the Dockerfile here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import jwt

from stickyws.cli import build_parser
from stickyws.localproc import free_port, stop_pid, wait_for_port
from stickyws.settings import ENV_JWT_SECRET, Settings, env_name
from tests.server.helpers import SECRET

ROOT = Path(__file__).resolve().parents[2]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STICKYWS_") and k != "REDIS_URL"}
    return {**env, **extra}


def _stickyws(*args: str, env: dict[str, str], timeout_s: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stickyws.cli", *args], env=env, capture_output=True, text=True, timeout=timeout_s
    )


def test_serve_refuses_to_start_without_a_secret() -> None:
    """Without STICKYWS_JWT_SECRET and without --dev, serve exits 2 with one line naming the variable."""
    result = _stickyws("serve", "--port", str(free_port()), env=_clean_env())
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"stickyws: {ENV_JWT_SECRET} is not set")
    assert "--dev" in lines[0]
    assert "Traceback" not in result.stderr


def test_serve_refuses_invalid_settings_in_one_line() -> None:
    """Settings that break a rule stop serve with exit 2 and a one-line message naming the rule."""
    env = _clean_env(**{ENV_JWT_SECRET: SECRET, "STICKYWS_HEARTBEAT_TTL_S": "5", "STICKYWS_HEARTBEAT_INTERVAL_S": "10"})
    result = _stickyws("serve", "--port", str(free_port()), env=env)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "registry-ttl-order" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_reports_a_taken_port_in_one_line() -> None:
    """A port already in use gives exit 2 and one line, no traceback."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = _stickyws("serve", "--port", str(port), env=_clean_env(**{ENV_JWT_SECRET: SECRET}))
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"stickyws: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in result.stderr


def test_dev_mode_serves_and_says_so_loudly() -> None:
    """`serve --dev` without a secret starts (in-memory registry), warns on stderr, answers /health 200."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stickyws", "serve", "--dev", "--port", str(port), "--publish-port", str(free_port())],
        env=_clean_env(STICKYWS_SERVER_ID="dev-1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, 10)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as resp:
            body = json.loads(resp.read())
        assert resp.status == 200
        assert body == {"status": "serving", "serverId": "dev-1", "connections": 0, "draining": False,
                        "registry": "memory"}  # fmt: skip
        probe = json.loads(re.search(r"^\s+CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M).group(1))
        healthcheck = subprocess.run(  # the Dockerfile's HEALTHCHECK command, against this server
            [sys.executable, *probe[1:]], env=_clean_env(STICKYWS_PORT=str(port)), capture_output=True, timeout=10
        )
        assert healthcheck.returncode == 0
    finally:
        stop_pid(proc)
    assert proc.returncode == 0
    err = proc.stderr.read() if proc.stderr else ""
    assert "THROWAWAY key" in err
    assert "Traceback" not in err


def test_dev_reports_a_taken_publish_port_in_one_line() -> None:
    """`serve --dev` whose publish port is taken exits 2 with one line naming both ports and the options."""
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        publish_port = sock.getsockname()[1]
        result = _stickyws("serve", "--dev", "--port", str(port), "--publish-port", str(publish_port), env=_clean_env())
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"stickyws: cannot listen on 127.0.0.1:{port} and 127.0.0.1:{publish_port} (publish endpoint): "
    )
    assert last.endswith("; pick free ports with --port and --publish-port (0 turns the endpoint off)")
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_publish_port_out_of_range_in_one_line() -> None:
    """--publish-port outside 0-65535 exits 2 with one line before anything starts."""
    result = _stickyws("serve", "--dev", "--publish-port", "70000", env=_clean_env())
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "stickyws: --publish-port must be a port number (0 turns the publish endpoint off)\n"


def test_token_command_prints_a_token_the_server_accepts() -> None:
    """`stickyws token --user NAME --ttl-s N` prints an HS256 JWT with sub, aud and exp."""
    result = _stickyws("token", "--user", "alice", "--ttl-s", "120", env=_clean_env(**{ENV_JWT_SECRET: SECRET}))
    assert result.returncode == 0
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"], audience="stickyws")
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 120


def test_token_command_without_secret_fails_cleanly() -> None:
    """`stickyws token` without the secret exits 2 with one line."""
    result = _stickyws("token", "--user", "alice", env=_clean_env())
    assert (result.returncode, result.stderr.count("\n")) == (2, 1)
    assert "Traceback" not in result.stderr


def test_dockerfile_matches_entry_point_settings_and_extra() -> None:
    """The Dockerfile runs the packaged entry point with a subcommand that parses, health-checks
    health_check_path on the port setting (read from the same STICKYWS_* variables, same defaults), runs
    as non-root and installs only the [server] extra."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
    assert entry == ["stickyws"]
    assert pyproject["project"]["scripts"]["stickyws"] == "stickyws.cli:main"
    args = build_parser().parse_args(cmd)
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", None)  # port: the `port` setting
    defaults = Settings()
    check = re.search(r"^HEALTHCHECK .*\n\s+CMD (\[.*\])$", dockerfile, re.M)
    assert check
    probe = json.loads(check.group(1))
    assert probe[:2] == ["python", "-c"]
    env_defaults = dict(re.findall(r"os\.environ\.get\('(\w+)', '([^']*)'\)", probe[2]))
    assert env_defaults == {
        env_name("port"): str(defaults["port"]),
        env_name("health_check_path"): defaults["health_check_path"],
    }
    assert "f'http://127.0.0.1:{port}{path}'" in probe[2]
    compile(probe[2], "HEALTHCHECK", "exec")  # the one-liner is valid Python
    assert re.search(rf"^EXPOSE {defaults['port']}$", dockerfile, re.M)
    user = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert user
    assert user[-1] not in ("root", "0")
    installs = re.findall(r'"(?:\.|stickyws)\[([\w,]+)\]"', dockerfile)
    assert installs
    assert set(installs) == {"server"}
    assert re.search(r"^FROM python:3\.1[1-9]-slim", dockerfile, re.M)


def test_dockerignore_keeps_the_package_and_drops_tests() -> None:
    """.dockerignore lets in pyproject and the package, and keeps tests and the venv out of the context."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines
    assert {"!pyproject.toml", "!stickyws/"} <= set(lines)
    assert not any(line.startswith(("!tests", "!.venv")) for line in lines)


def test_serve_loads_a_user_handler() -> None:
    """`serve --handler module:attr` runs the user's handler for send frames, its errors as error frames."""
    import asyncio

    import aiohttp

    from tests.server.helpers import recv_json, run, send, token

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stickyws", "serve", "--port", str(port),
         "--handler", "tests.server.sample_handler:shout"],
        env=_clean_env(**{ENV_JWT_SECRET: SECRET}), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for_port(port, 10)

        async def go() -> None:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(f"http://127.0.0.1:{port}/ws?token={token('zoe')}")
                assert (await recv_json(ws))["type"] == "connected"
                await send(ws, 1, "hello")
                assert await recv_json(ws) == {"type": "message", "seq": 1, "data": {"user": "zoe", "text": "HELLO"}}
                assert await recv_json(ws) == {"type": "ack", "id": 1}
                await send(ws, 2, 42)
                assert await recv_json(ws) == {"type": "error", "code": "not_text", "message": "send a string", "id": 2}
                await ws.close()
                await asyncio.sleep(0)

        run(go())
    finally:
        stop_pid(proc)
    assert proc.returncode == 0


def test_serve_rejects_a_bad_handler_spec_in_one_line() -> None:
    """A --handler that cannot be imported stops serve with exit 2 and one line."""
    result = _stickyws("serve", "--handler", "no.such.module:handle", env=_clean_env(**{ENV_JWT_SECRET: SECRET}))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("stickyws: cannot import handler module 'no.such.module'")
    assert "Traceback" not in result.stderr
