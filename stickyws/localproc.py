"""Local processes on loopback: free ports and a real ``redis-server`` started and stopped by PID.

Used by the local twin and by the tests. Nothing here binds anything but 127.0.0.1, and
every process is stopped by the PID this module started, never by name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from stickyws.errors import StickywsError


class LocalProcessError(StickywsError, RuntimeError):
    """A local helper process could not be started; the message says what to install or check."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float, host: str = "127.0.0.1") -> None:
    """Block until something accepts TCP connections on ``host:port``, or raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise LocalProcessError(f"nothing listens on {host}:{port} after {timeout_s:g} s") from None
            time.sleep(0.02)


def stop_pid(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """SIGTERM ``proc``, then SIGKILL if it has not exited after ``timeout_s``; idempotent."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=timeout_s)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, exited but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


class RedisServer:
    """A throwaway ``redis-server`` on 127.0.0.1 with no persistence.

    ``start()`` picks a free port (kept across ``restart()`` so clients can reconnect),
    ``stop()`` ends the process by its PID, ``url`` is ``redis://127.0.0.1:PORT/0``.
    """

    def __init__(self, port: int | None = None, binary: str = "redis-server") -> None:
        self.port = port or free_port()
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="stickyws-redis-")

    @property
    def url(self) -> str:
        """Connection URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """PID of the running server, or ``None``."""
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start the server and wait until it accepts connections."""
        path = shutil.which(self.binary)
        if path is None:
            raise LocalProcessError(
                f"{self.binary} not found: install the Debian package redis-server (make test does)"
            )
        args = [
            path,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--logfile", str(Path(self._dir) / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for_port(self.port, timeout_s)
        except LocalProcessError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server by PID (idempotent)."""
        if self.proc is not None:
            stop_pid(self.proc)

    def kill(self) -> None:
        """SIGKILL the server (a crash, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, and start again on the same port (data is lost)."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


# --- Generic child processes (added for the local twin: reference servers and HAProxy) ---


def start_process(
    args: list[str], *, env: dict[str, str] | None = None, log_path: str | Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own session (so a Ctrl-C in the terminal reaches only its owner).

    stdout and stderr go to ``log_path`` (appended) or are discarded; stdin is closed. Raises
    :class:`LocalProcessError` naming the program when it cannot be executed.
    """
    out = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    except OSError as exc:
        raise LocalProcessError(f"cannot start {args[0]}: {exc}") from exc
    finally:
        if not isinstance(out, int):
            out.close()


def kill_pid(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """SIGKILL ``proc`` (a crash, not a shutdown) and reap it; idempotent."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    proc.wait(timeout=timeout_s)


def http_status(port: int, path: str, timeout_s: float = 1.0, host: str = "127.0.0.1") -> int | None:
    """Status of ``GET path`` on ``host:port``, or ``None`` when nothing answers."""
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Host": "localhost"})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_for_http(
    port: int,
    path: str,
    timeout_s: float,
    *,
    status: int = 200,
    proc: subprocess.Popen[bytes] | None = None,
    host: str = "127.0.0.1",
) -> None:
    """Block until ``GET path`` answers ``status``; raise after ``timeout_s`` or when ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    last: int | None = None
    while True:
        if proc is not None and proc.poll() is not None:
            raise LocalProcessError(f"process {proc.pid} exited with {proc.returncode} before {path} answered")
        last = http_status(port, path, host=host)
        if last == status:
            return
        if time.monotonic() > deadline:
            raise LocalProcessError(f"GET {host}:{port}{path} answered {last} (wanted {status}) after {timeout_s:g} s")
        time.sleep(0.03)
