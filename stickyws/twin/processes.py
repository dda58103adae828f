"""The twin's server processes: the command and its placeholders, starting one, and its log.

A server is the reference server by default, or any program given as ``server_cmd``: an argument
list (or a shell-like string, split with :func:`shlex.split`, never run by a shell, so SIGTERM
reaches the program itself) whose ``{port}``, ``{server_id}``, ``{redis_url}`` and
``{jwt_secret}`` placeholders are filled per server (:func:`expand`; ``server_env`` values too).
Every server also gets the settings it is told as environment variables (``server_environment``:
every ``STICKYWS_*`` setting for the reference server, only ``server_env``'s with ``server_mode=own``),
``REDIS_URL``, ``STICKYWS_SERVER_ID`` and ``STICKYWS_JWT_SECRET`` (:func:`spawn`).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from stickyws.errors import LocalTwinError
from stickyws.localproc import LocalProcessError, start_process
from stickyws.settings import ENV_JWT_SECRET, ENV_REDIS_URL, ENV_SERVER_ID, Settings, server_environment

#: Lines of a server's log quoted in the error when it fails to start.
LOG_TAIL_LINES = 20
#: Placeholders of ``server_cmd`` and ``server_env`` values, filled per server by :func:`expand`.
PLACEHOLDERS = ("port", "server_id", "redis_url", "jwt_secret")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TwinError(LocalTwinError, RuntimeError):
    """A twin operation failed; the message says which server and what to look at (its log).

    Also importable from :mod:`stickyws.twin.cluster`, which re-exports it.
    """


def log_tail(path: Path, lines: int = 3) -> list[str]:
    """The last ``lines`` lines of a process's log (``[]`` when it wrote none)."""
    if not path.exists():
        return []
    return path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:]


def quote_log(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The end of a log quoted for an error: ``server-s1.log (last 2 lines):``, then each line as ``  | ...``."""
    tail = log_tail(path, lines)
    if not tail:
        return f"{path.name} is empty: the server wrote nothing to stdout or stderr"
    count = f"{len(tail)} line{'s' if len(tail) != 1 else ''}"
    return f"{path.name} (last {count}):\n" + "\n".join(f"  | {line}" for line in tail)


def expand(template: str, values: Mapping[str, str]) -> str:
    """``template`` with every ``{name}`` of :data:`PLACEHOLDERS` replaced by ``values[name]``.

    ``{{`` and ``}}`` stand for a literal brace (``{{server_id}}`` gives ``{server_id}``, not the server id).
    Raises :class:`TwinError` naming the placeholders there are for any other ``{word}``; text in
    braces that is not a single word (JSON, ``{}``) is left as it is.
    """

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return match.group(0)[0]
        if name not in values:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise TwinError(f"unknown placeholder {{{name}}} in {template!r}: use {known}")
        return values[name]

    return _PLACEHOLDER.sub(fill, template)


def literal(text: str) -> str:
    """``text`` with its braces doubled, so :func:`expand` gives it back unchanged."""
    return text.replace("{", "{{").replace("}", "}}")


def server_command(server_cmd: str | Sequence[str]) -> list[str]:
    """The argument list of ``server_cmd`` (a string is split as a shell would, but never run by one)."""
    try:
        args = shlex.split(server_cmd) if isinstance(server_cmd, str) else list(server_cmd)
    except ValueError as exc:
        raise TwinError(f"cannot split the server command {server_cmd!r}: {exc}") from None
    if not args:
        raise TwinError("the server command is empty: give a program, e.g. 'node server.js --port {port}'")
    return args


@dataclass
class ServerProcess:
    """One reference server: its slot name (also its server id and cookie value), port and process."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    #: ``starting`` | ``serving`` | ``deregistering`` | ``stopped`` | ``killed``
    phase: str = "starting"
    exit_code: int | None = None

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None


@dataclass(frozen=True)
class ServerStatus:
    """One line of ``twin status``."""

    name: str
    pid: int | None
    port: int
    phase: str
    target: str
    connections: int

    def render(self) -> str:
        """``s1  pid 4242  127.0.0.1:40001  serving  healthy  3 connections``."""
        pid = f"pid {self.pid}" if self.pid else "exited"
        return (
            f"{self.name:<4} {pid:<10} 127.0.0.1:{self.port:<5}  {self.phase:<13} {self.target:<9} "
            f"{self.connections} connection{'s' if self.connections != 1 else ''}"
        )


class ExternalRegistry:
    """A registry the twin uses but did not start (``TwinCluster(registry_url=...)``): never stopped by it."""

    proc: subprocess.Popen[bytes] | None = None

    def __init__(self, url: str) -> None:
        self.url = url
        self.port = urlsplit(url).port or 6379

    @property
    def pid(self) -> int | None:
        """Always ``None``: not the twin's process."""
        return None

    def start(self) -> ExternalRegistry:
        """Nothing to start."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Nothing to stop."""


def _told_port(settings: Settings, port: int) -> dict[str, str]:
    """Your own server told ``port`` (``server_env``) is told the port the twin chose for it."""
    variable = settings.told_env().get("port")
    return {variable: str(port)} if variable else {}


def spawn(
    name: str,
    port: int,
    *,
    settings: Settings,
    command: Sequence[str] | None,
    server_env: Mapping[str, str],
    redis_url: str,
    jwt_secret: str,
    workdir: Path,
) -> ServerProcess:
    """Start server ``name`` on ``port``: ``command`` (placeholders filled), or the reference server when ``None``.

    Its output goes to ``workdir/server-{name}.log``; returns at once, without waiting for it to answer.
    """
    values = {"port": str(port), "server_id": name, "redis_url": redis_url, "jwt_secret": jwt_secret}
    env = {
        **os.environ,
        **server_environment(settings),
        **_told_port(settings, port),
        ENV_REDIS_URL: redis_url,
        ENV_JWT_SECRET: jwt_secret,
        ENV_SERVER_ID: name,
        **{k: expand(v, values) for k, v in server_env.items()},
    }
    log_path = workdir / f"server-{name}.log"
    if command is None:
        args = [sys.executable, "-m", "stickyws.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    else:
        args = [expand(a, values) for a in command]
    try:
        started = start_process(args, env=env, log_path=log_path)
    except LocalProcessError as exc:
        raise TwinError(f"server {name}: {exc}; check the server command {shlex.join(args)!r}") from None
    return ServerProcess(name, port, started, log_path)
