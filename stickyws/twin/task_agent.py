"""The twin's stand-in for the ECS agent's task scale-in protection endpoint, one path per server.

ECS injects ``ECS_AGENT_URI`` into every container; a task protects or releases itself with
``PUT $ECS_AGENT_URI/task-protection/v1/state`` and the body ``{"ProtectionEnabled": bool,
"ExpiresInMinutes": N}`` (1 to 2880; 120 when left out), and reads its state with ``GET`` on the same
path (ECS developer guide, "Amazon ECS task scale-in protection endpoint"). The twin serves that path on
127.0.0.1 under ``/<server>/`` (:meth:`TaskAgent.uri` is what each server is given as
``ECS_AGENT_URI``) and records each server's protection with its expiry, as ECS does: a protection
whose time ran out counts as released.

Answers: ``{"protection": {"ProtectionEnabled", "ExpirationDate", "TaskArn"}}``; a body the agent
would refuse gets HTTP 400 and ``{"error": {"Arn", "Code": "InvalidParameterException", "Message"}}``.
A plain HTTP server in one daemon thread: no process of its own, stopped by :meth:`TaskAgent.stop`.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: The endpoint's path under ``$ECS_AGENT_URI``.
STATE_PATH = "/task-protection/v1/state"
#: ``ExpiresInMinutes`` when a request names none, and the allowed range (ECS's).
DEFAULT_EXPIRES_MIN = 120
EXPIRES_RANGE_MIN = (1, 2880)


@dataclass(frozen=True)
class ProtectionCall:
    """One accepted ``PUT``: when (monotonic seconds), which server, and what it asked for."""

    at: float
    name: str
    enabled: bool
    expires_min: int | None


class TaskAgent:
    """See the module doc. ``clock`` (monotonic seconds) decides expiry; ``wall_clock`` dates the answers."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        #: Server name -> monotonic time its protection ends (absent: unprotected).
        self._until: dict[str, float] = {}
        #: Every accepted call, in order.
        self.calls: list[ProtectionCall] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    def start(self) -> TaskAgent:
        """Listen on a free port of 127.0.0.1 (idempotent)."""
        if self._server is not None:
            return self
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                agent._put(self)

            def do_GET(self) -> None:
                agent._get(self)

            def log_message(self, format: str, *args: object) -> None:
                """Silent: the twin reports what it records."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="twin-task-agent", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=3.0)
        self._server = self._thread = None

    @property
    def port(self) -> int:
        """The port it listens on (0 before :meth:`start`)."""
        return self._server.server_address[1] if self._server is not None else 0

    def uri(self, name: str) -> str:
        """``ECS_AGENT_URI`` of server ``name``."""
        return f"http://127.0.0.1:{self.port}/{name}"

    # What it recorded

    def protected(self, name: str) -> bool:
        """Whether ``name`` holds protection now (an expired protection counts as released)."""
        with self._lock:
            until = self._until.get(name)
            return until is not None and until > self._clock()

    def protected_names(self) -> set[str]:
        """Every server that holds protection now."""
        with self._lock:
            now = self._clock()
            return {name for name, until in self._until.items() if until > now}

    # The endpoint

    def _name(self, path: str) -> str | None:
        head, sep, tail = path.partition("?")[0].lstrip("/").partition("/")
        return head if sep and "/" + tail == STATE_PATH and head else None

    def _put(self, request: BaseHTTPRequestHandler) -> None:
        name = self._name(request.path)
        if name is None:
            self._answer(request, 404, {"error": {"Code": "NotFound", "Message": f"no such path {request.path}"}})
            return
        length = int(request.headers.get("Content-Length") or 0)
        try:
            body = json.loads(request.rfile.read(length) or b"{}")
        except ValueError:
            body = None
        enabled = body.get("ProtectionEnabled") if isinstance(body, dict) else None
        expires = body.get("ExpiresInMinutes") if isinstance(body, dict) else None
        lo, hi = EXPIRES_RANGE_MIN
        problem = None
        if not isinstance(enabled, bool):
            problem = "ProtectionEnabled is required and must be true or false"
        elif expires is not None and (
            isinstance(expires, bool) or not isinstance(expires, int) or not lo <= expires <= hi
        ):
            problem = f"ExpiresInMinutes must be an integer from {lo} to {hi}"
        if problem is not None:
            error = {"Arn": self._arn(name), "Code": "InvalidParameterException", "Message": problem}
            self._answer(request, 400, {"error": error})
            return
        assert isinstance(enabled, bool)
        with self._lock:
            now = self._clock()
            self.calls.append(ProtectionCall(now, name, enabled, expires))
            if enabled:
                self._until[name] = now + 60 * (expires if expires is not None else DEFAULT_EXPIRES_MIN)
            else:
                self._until.pop(name, None)
        self._answer(request, 200, {"protection": self._state(name)})

    def _get(self, request: BaseHTTPRequestHandler) -> None:
        name = self._name(request.path)
        if name is None:
            self._answer(request, 404, {"error": {"Code": "NotFound", "Message": f"no such path {request.path}"}})
            return
        self._answer(request, 200, {"protection": self._state(name)})

    def _state(self, name: str) -> dict[str, object]:
        with self._lock:
            until = self._until.get(name)
            left = None if until is None else until - self._clock()
        enabled = left is not None and left > 0
        expiry = None
        if enabled:
            assert left is not None
            moment = datetime.datetime.fromtimestamp(self._wall_clock() + left, tz=datetime.UTC)
            expiry = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
        return {"ProtectionEnabled": enabled, "ExpirationDate": expiry, "TaskArn": self._arn(name)}

    @staticmethod
    def _arn(name: str) -> str:
        return f"arn:aws:ecs:local:000000000000:task/twin/{name}"

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)
