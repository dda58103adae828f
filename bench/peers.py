"""The two servers under test, started and stopped by PID, pinned to one core, and their readings.

``reference``: ``stickyws serve`` (aiohttp + uvloop, Redis registry, echo handler), settings from the
settings model (``to_env``). ``node``: ``bench/node-peer/server.js`` (the seed article's server on
``ws`` + ``ioredis``), given the same key layout (from :mod:`stickyws.keys`), secret, audience, TTLs
and intervals through its environment. ``socketio``: ``bench/socketio-peer/server.js`` (socket.io with
``@socket.io/redis-adapter``), the peer of the fan-out scenarios, given the secret, audience and Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from stickyws import keys
from stickyws.localproc import free_port, start_process, stop_pid, wait_for_http
from stickyws.settings import ENV_JWT_SECRET, ENV_REDIS_URL, ENV_SERVER_ID, Settings, to_env

BENCH_DIR = Path(__file__).resolve().parent
NODE_PEER = BENCH_DIR / "node-peer" / "server.js"
SOCKETIO_PEER = BENCH_DIR / "socketio-peer" / "server.js"
PEERS = ("reference", "node")
#: The peers of the fan-out scenarios.
FANOUT_PEERS = ("reference", "socketio")
#: Seconds a server gets to answer /health after it starts.
START_TIMEOUT_S = 20.0
#: A user id that :func:`stickyws.keys.user_key` keeps as it is; the Node peer's template has ``{id}`` in its place
#: (``user_key("{id}")`` would escape the braces, and every user would share one key).
_USER_PLACEHOLDER = "PEERUSERID"


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used (all its threads), from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """One running server: which peer, its port, process and log."""

    peer: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        """The WebSocket endpoint (socket.io: its websocket transport)."""
        if self.peer == "socketio":
            return f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket"
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        """The server's PID."""
        return self.proc.pid

    def rss_bytes(self) -> int:
        """Resident set size now (``VmRSS`` of ``/proc/PID/status``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def cpu_s(self) -> float:
        """User + system CPU seconds the server has used (all its threads)."""
        return process_cpu_s(self.pid)

    def stop(self) -> None:
        """Stop by PID (SIGTERM, then SIGKILL)."""
        stop_pid(self.proc, timeout_s=5.0)


def taskset(core: int | None, args: list[str]) -> list[str]:
    """``args`` pinned to ``core`` with taskset (unchanged when ``core`` is ``None``)."""
    return args if core is None else ["taskset", "-c", str(core), *args]


def start(
    peer: str,
    *,
    settings: Settings,
    secret: str,
    redis_url: str,
    core: int | None,
    workdir: Path,
    tag: str,
    registry: str = "redis",
    extra_env: dict[str, str] | None = None,
    python: str | None = None,
) -> Server:
    """Start ``peer`` on a free port, pinned to ``core``; returns once its /health answers 200.

    ``registry="memory"`` starts the reference server without ``REDIS_URL`` (its in-memory registry);
    ``extra_env`` is added to the server's environment (a ``PYTHONPATH`` in it goes first on the path);
    ``python`` runs the reference server with another interpreter (one with the server's dependencies).
    """
    port = free_port()
    server_id = f"{peer}-{tag}"
    log_path = workdir / f"{server_id}.log"
    if peer == "reference":
        env = {
            **os.environ,
            **to_env(settings),
            ENV_REDIS_URL: redis_url if registry == "redis" else "",
            ENV_JWT_SECRET: secret,
            ENV_SERVER_ID: server_id,
        }
        # -P: the working directory does not shadow a PYTHONPATH tree (the ``baseline`` variant).
        interpreter = python or sys.executable
        args = [interpreter, "-P", "-m", "stickyws.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        health = settings["health_check_path"]
    elif peer == "node":
        sv = settings.server
        env = {
            **os.environ,
            "PEER_PORT": str(port),
            "PEER_SERVER_ID": server_id,
            "PEER_JWT_SECRET": secret,
            "PEER_JWT_AUDIENCE": sv.jwt_audience,
            "PEER_USER_KEY_TEMPLATE": keys.user_key(_USER_PLACEHOLDER).replace(_USER_PLACEHOLDER, "{id}"),
            "PEER_SESSION_KEY_TEMPLATE": keys.session_key(_USER_PLACEHOLDER).replace(_USER_PLACEHOLDER, "{id}"),
            "PEER_SESSION_TTL_S": str(sv.session_ttl_s),
            "PEER_OUTBOX_MAX_MESSAGES": str(settings.delivery.outbox_max_messages),
            "PEER_OUTBOX_MAX_BYTES": str(settings.delivery.outbox_max_bytes),
            "PEER_HEARTBEAT_KEY": keys.heartbeat_key(server_id),
            "PEER_ROUTING_TTL_S": str(sv.routing_ttl_s),
            "PEER_HEARTBEAT_INTERVAL_S": str(sv.heartbeat_interval_s),
            "PEER_HEARTBEAT_TTL_S": str(sv.heartbeat_ttl_s),
            "PEER_PING_INTERVAL_S": str(sv.ping_interval_s or 0),
            "PEER_REDIS_URL": redis_url,
        }
        args = ["node", str(NODE_PEER)]
        health = "/health"
    elif peer == "socketio":
        env = {
            **os.environ,
            "PEER_PORT": str(port),
            "PEER_SERVER_ID": server_id,
            "PEER_JWT_SECRET": secret,
            "PEER_JWT_AUDIENCE": settings.server.jwt_audience,
            "PEER_REDIS_URL": redis_url,
        }
        args = ["node", str(SOCKETIO_PEER)]
        health = "/health"
    elif peer.startswith("proto-"):  # bench/prototypes/minimal_ws.py: a WebSocket layer alone
        env = dict(os.environ)
        args = [sys.executable, "-m", "bench.prototypes.minimal_ws", "--layer", peer[6:], "--port", str(port)]
        health = "/health"
    else:
        raise ValueError(f"unknown peer {peer!r}: one of {(*PEERS, *FANOUT_PEERS[1:])} or proto-aiohttp, proto-picows")
    if extra_env:
        path = os.pathsep.join(p for p in (extra_env.get("PYTHONPATH"), env.get("PYTHONPATH")) if p)
        env = {**env, **extra_env, **({"PYTHONPATH": path} if path else {})}
    proc = start_process(taskset(core, args), env=env, log_path=log_path)
    server = Server(peer, port, proc, log_path)
    try:
        wait_for_http(port, health, START_TIMEOUT_S, proc=proc)
    except BaseException:
        server.stop()
        raise
    return server
