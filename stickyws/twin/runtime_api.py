"""HAProxy's runtime API (the ``stats socket``): the twin's DeregisterTargets and target health.

One command per connection on the UNIX socket, answered in text. The parsing functions are pure
and tested on captured answers; :class:`RuntimeApi` only moves bytes.

What the twin uses, and what it stands for on AWS:

* ``set server BE/S addr 127.0.0.1 port P`` + ``state ready``: RegisterTargets
* ``set server BE/S state maint``: DeregisterTargets (sticky clients are redispatched, open tunnels
  stay up; ``state drain`` would keep sending sticky clients to the server, unlike the ALB)
* ``shutdown sessions server BE/S``: the end of the deregistration delay (open tunnels are cut)
* ``show servers state BE`` and ``show stat``: DescribeTargetHealth, active connections and the
  requests (WebSocket handshakes included) each server was given
* ``set map FILE KEY VALUE``: the weights of the production rule's weighted forward
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from stickyws.errors import LocalTwinError

#: ``srv_op_state`` values (HAProxy's ``enum srv_state``).
OP_STOPPED, OP_STARTING, OP_RUNNING, OP_STOPPING = 0, 1, 2, 3
#: ``srv_admin_state`` bits: forced maintenance, inherited maintenance, resolver maintenance, drain.
ADMIN_FMAINT, ADMIN_IMAINT, ADMIN_RMAINT, ADMIN_FDRAIN = 0x01, 0x02, 0x08, 0x10
_ADMIN_MAINT = ADMIN_FMAINT | ADMIN_IMAINT | ADMIN_RMAINT

_ERROR_PREFIXES = ("No such", "Unknown command", "Require ", "Permission denied", "Invalid ", "'set server")
_STATES = ("ready", "drain", "maint")


class RuntimeApiError(LocalTwinError, RuntimeError):
    """HAProxy refused a runtime command or could not be reached; the message quotes its answer."""


@dataclass(frozen=True)
class ServerState:
    """One line of ``show servers state``: a target as HAProxy sees it."""

    backend: str
    name: str
    address: str
    port: int
    op_state: int
    admin_state: int

    @property
    def in_maintenance(self) -> bool:
        """Deregistered: HAProxy sends it no new traffic (``state maint``)."""
        return bool(self.admin_state & _ADMIN_MAINT)

    @property
    def healthy(self) -> bool:
        """Registered and passing its health checks (the ALB's ``healthy``)."""
        return self.op_state == OP_RUNNING and not self.in_maintenance

    @property
    def status(self) -> str:
        """The ALB's word for this state: ``unused`` (maintenance), ``healthy`` or ``unhealthy``."""
        if self.in_maintenance:
            return "unused"
        return "healthy" if self.op_state == OP_RUNNING else "unhealthy"


def parse_servers_state(text: str) -> list[ServerState]:
    """Parse the answer to ``show servers state [BACKEND]`` (format version 1)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].strip() != "1":
        raise RuntimeApiError(f"unexpected 'show servers state' answer: {text[:200]!r}")
    header: list[str] = []
    out: list[ServerState] = []
    for line in lines[1:]:
        if line.startswith("#"):
            header = line.lstrip("# ").split()
            continue
        row = dict(zip(header, line.split(), strict=False))
        out.append(
            ServerState(
                backend=row["be_name"],
                name=row["srv_name"],
                address=row["srv_addr"],
                port=int(row["srv_port"]),
                op_state=int(row["srv_op_state"]),
                admin_state=int(row["srv_admin_state"]),
            )
        )
    return out


def parse_current_sessions(text: str, backend: str) -> dict[str, int]:
    """``{server: current sessions}`` for ``backend`` from the CSV answer to ``show stat``."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise RuntimeApiError(f"unexpected 'show stat' answer: {text[:200]!r}")
    header = lines[0][2:].split(",")
    px, sv, scur = header.index("pxname"), header.index("svname"), header.index("scur")
    out: dict[str, int] = {}
    for line in lines[1:]:
        cols = line.split(",")
        if len(cols) > scur and cols[px] == backend and cols[sv] not in ("FRONTEND", "BACKEND"):
            out[cols[sv]] = int(cols[scur] or 0)
    return out


def parse_total_sessions(text: str, backend: str) -> dict[str, int]:
    """``{server: sessions since start}`` (``stot``) for ``backend`` from the CSV answer to ``show stat``."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise RuntimeApiError(f"unexpected 'show stat' answer: {text[:200]!r}")
    header = lines[0][2:].split(",")
    px, sv, stot = header.index("pxname"), header.index("svname"), header.index("stot")
    out: dict[str, int] = {}
    for line in lines[1:]:
        cols = line.split(",")
        if len(cols) > stot and cols[px] == backend and cols[sv] not in ("FRONTEND", "BACKEND"):
            out[cols[sv]] = int(cols[stot] or 0)
    return out


def check_answer(command: str, answer: str) -> str:
    """``answer`` unchanged, or :class:`RuntimeApiError` when HAProxy refused ``command``."""
    stripped = answer.strip()
    if stripped.startswith(_ERROR_PREFIXES) or "is not accepted" in stripped:
        raise RuntimeApiError(f"HAProxy refused {command!r}: {stripped}")
    return answer


class RuntimeApi:
    """Client of one HAProxy ``stats socket ... level admin``; every call is one connection."""

    def __init__(self, socket_path: str, timeout_s: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s

    def command(self, command: str) -> str:
        """Send one command and return HAProxy's whole answer (errors raise :class:`RuntimeApiError`)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout_s)
                sock.connect(self.socket_path)
                sock.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise RuntimeApiError(
                f"cannot reach HAProxy's runtime API at {self.socket_path}: {exc}; is the twin running?"
            ) from exc
        return check_answer(command, b"".join(chunks).decode(errors="replace"))

    def set_address(self, backend: str, server: str, host: str, port: int) -> None:
        """Point ``backend/server`` at ``host:port`` (health checks follow the new port)."""
        self.command(f"set server {backend}/{server} addr {host} port {port}")

    def set_state(self, backend: str, server: str, state: str) -> None:
        """``ready`` (register), ``maint`` (deregister) or ``drain`` (not the ALB's drain: see the module doc)."""
        if state not in _STATES:
            raise ValueError(f"state must be one of {_STATES}, not {state!r}")
        self.command(f"set server {backend}/{server} state {state}")

    def shutdown_sessions(self, backend: str, server: str) -> None:
        """Close every open connection to ``backend/server`` at once (clients see 1006)."""
        self.command(f"shutdown sessions server {backend}/{server}")

    def servers_state(self, backend: str) -> list[ServerState]:
        """Every server of ``backend`` with its health and admin state."""
        return parse_servers_state(self.command(f"show servers state {backend}"))

    def total_sessions(self, backend: str) -> dict[str, int]:
        """Sessions (requests, WebSocket handshakes included) each server of ``backend`` was given since start."""
        return parse_total_sessions(self.command("show stat"), backend)

    def set_map(self, path: str, key: str, value: str) -> None:
        """Set ``key`` to ``value`` in the loaded map file ``path`` (the file on disk is not changed)."""
        command = f"set map {path} {key} {value}"
        answer = self.command(command).strip()
        if answer:  # HAProxy answers nothing on success ("Unknown map identifier ...", "entry not found" otherwise)
            raise RuntimeApiError(f"HAProxy refused {command!r}: {answer}")

    def current_sessions(self, backend: str) -> dict[str, int]:
        """Open connections per server of ``backend``."""
        return parse_current_sessions(self.command("show stat"), backend)
