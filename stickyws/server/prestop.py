"""The Kubernetes preStop drain: ``stickyws server drain-self`` asks the server beside it to drain.

On Kubernetes, deleting a pod runs its preStop hook and starts the deregistration of its target at
the same moment; the load balancer keeps sending the pod new requests until the deregistration has
propagated (``deregistration_propagation_s``), and SIGTERM comes only when the hook returns. So the
hook is where the drain belongs, after a delay that covers the propagation:

1. the hook runs ``stickyws server drain-self`` in the server's container: a ``POST``
   :data:`PRESTOP_PATH` to the server on ``127.0.0.1`` (:func:`drain_self`);
2. the server answers that request only for a loopback peer (anyone else gets 403: through the load
   balancer the peer is never loopback), waits ``pre_stop_delay_s`` (or the request's
   ``?delay_s=``, which ``drain-self --delay-s`` sends) while it keeps serving (the
   load balancer may still send it new requests), then begins the drain, the same paced drain as
   every other stop cause, with source :data:`SOURCE` (:func:`drain_after_delay`);
3. it answers once the drain has ended, at most ``termination_grace_period_s`` after the request
   came; the command prints one line and exits 0; Kubernetes then sends SIGTERM, and the server,
   drained, exits at once.

A drain already running (a drain notice, SIGTERM) is not started twice: the request waits for it.
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stickyws.errors import ReferenceServerError

if TYPE_CHECKING:
    from stickyws.server.core import ServerCore
    from stickyws.settings import Settings

#: The server's preStop route (the server's own port; loopback peers only).
PRESTOP_PATH = "/stickyws/drain-self"
#: ``source`` of the drain the preStop hook starts (audit lines, ``drain_start``/``drain_end``).
SOURCE = "k8s-prestop"
#: How often the delay looks whether another trigger began the drain meanwhile.
DELAY_POLL_S = 0.05
#: ``source`` of a result whose server went away before it answered (it exited: nothing is left to drain).
SERVER_EXITED = "server-exited"
#: Seconds the command waits beyond the grace period before it gives up on the server's answer.
CLIENT_MARGIN_S = 5.0


def is_loopback_peer(address: str | None) -> bool:
    """Whether ``address`` (a peer's IP) is this machine: ``127.0.0.0/8``, ``::1`` or ``::ffff:127.x.y.z``."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


#: Query parameter of the preStop request that sets the delay (seconds) instead of the server's setting.
DELAY_QUERY = "delay_s"


def prestop_timing(settings: Settings) -> tuple[float, float]:
    """``(pre_stop_delay_s, termination_grace_period_s)`` of ``settings`` (the Kubernetes group)."""
    return float(settings["pre_stop_delay_s"]), float(settings["termination_grace_period_s"])


def requested_delay_s(text: str | None, default_s: float, grace_s: float) -> float:
    """The delay a request asks for (``?delay_s=``), or ``default_s`` without one.

    Raises ``ValueError`` (the server answers 400) for anything but a number from 0 to ``grace_s``.
    """
    if text is None:
        return default_s
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{DELAY_QUERY} must be a number of seconds, not {text[:32]!r}") from None
    if not 0 <= value <= grace_s:  # also refuses nan
        raise ValueError(f"{DELAY_QUERY} must be from 0 to the grace period ({grace_s:g} s), not {text[:32]}")
    return value


@dataclass(frozen=True)
class DrainSelfResult:
    """The server's answer to the preStop request.

    ``status`` 200: the drain ended (``left`` connections were still open at its end); 504: the grace
    period ran out first; 403: the request did not come from loopback.
    """

    status: int
    source: str
    delay_s: float
    drained_s: float
    left: int

    def as_json(self) -> dict[str, Any]:
        """The response body."""
        return {
            "source": self.source,
            "delayS": round(self.delay_s, 3),
            "drainedS": round(self.drained_s, 3),
            "left": self.left,
        }

    @classmethod
    def from_json(cls, status: int, body: dict[str, Any]) -> DrainSelfResult:
        """Read a response body (missing fields: empty / 0)."""
        return cls(
            status,
            str(body.get("source", "")),
            float(body.get("delayS", 0)),
            float(body.get("drainedS", 0)),
            int(body.get("left", 0)),
        )

    def line(self) -> str:
        """The one line ``stickyws server drain-self`` prints."""
        if self.source == SERVER_EXITED:
            return f"drain-self: the server closed the request after {self.drained_s:.1f} s: it has exited"
        if self.status == 504:
            return (
                f"drain-self: the grace period ran out {self.drained_s:.1f} s into the drain ({self.source}) "
                f"with {self.left} connection(s) open"
            )
        return (
            f"drain-self: drained ({self.source}) in {self.drained_s:.1f} s after a {round(self.delay_s, 1):g} s "
            f"preStop delay, {self.left} connection(s) left"
        )


def _ended(core: ServerCore) -> bool:
    """A drain has begun, or the server is closing: the delay is over."""
    return core.drain_run is not None or core.state.value == "closed"


async def drain_after_delay(core: ServerCore, delay_s: float, grace_s: float) -> DrainSelfResult:
    """Wait ``delay_s`` serving, begin the drain (source :data:`SOURCE`), and wait until it ends.

    The whole call is bounded by ``grace_s`` (the pod's grace period counts from the preStop hook's
    start). A drain begun by another trigger during the delay ends the delay; the call then waits
    for that drain. A server closing during the delay ends it too, with nothing to drain.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + grace_s
    while not _ended(core) and (left := started + delay_s - loop.time()) > 0:  # noqa: ASYNC110 - no drain yet
        await asyncio.sleep(min(left, DELAY_POLL_S))
    waited = loop.time() - started
    core.begin_drain(SOURCE, f"preStop after {waited:.1f} s")
    run = core.drain_run
    if run is None:  # the server is closing: nothing left to drain
        return DrainSelfResult(200, SOURCE, waited, 0.0, len(core.connections))
    try:
        async with asyncio.timeout(max(0.0, deadline - loop.time())):
            await run.done.wait()
    except TimeoutError:
        return DrainSelfResult(504, run.source, waited, loop.time() - run.started_at, len(core.connections))
    return DrainSelfResult(200, run.source, waited, loop.time() - run.started_at, len(core.connections))


class DrainSelfError(ReferenceServerError):
    """The preStop request failed; the message says what to check."""


def drain_self(
    port: int, timeout_s: float, *, delay_s: float | None = None, host: str = "127.0.0.1"
) -> DrainSelfResult:
    """``POST`` :data:`PRESTOP_PATH` to the server on ``host:port`` and wait for its answer (blocking).

    ``delay_s``: the preStop delay to ask for (default: the server's ``pre_stop_delay_s``).

    ``timeout_s`` bounds the wait (the grace period plus :data:`CLIENT_MARGIN_S`). A server that exits
    while the request waits (SIGTERM from elsewhere) ends the wait: its drain is over. Raises
    :class:`DrainSelfError` when no server answers, or answers with a status other than 200/504.
    """
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        try:
            path = PRESTOP_PATH if delay_s is None else f"{PRESTOP_PATH}?{DELAY_QUERY}={delay_s:g}"
            conn.request("POST", path, headers={"Host": "localhost", "Content-Length": "0"})
        except OSError as exc:
            raise DrainSelfError(
                f"no server answers on {host}:{port} ({exc.strerror or exc}): run drain-self in the server's "
                "container, with --port (or STICKYWS_PORT) the server listens on"
            ) from None
        try:
            response = conn.getresponse()
            raw = response.read()
        except TimeoutError:
            raise DrainSelfError(f"the server did not answer within {timeout_s:g} s") from None
        except (OSError, http.client.HTTPException):
            # The server went away while the drain ran: it exited, so it holds no connection any more.
            return DrainSelfResult(200, SERVER_EXITED, 0.0, time.monotonic() - started, 0)
    finally:
        conn.close()
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {}
    if response.status not in (200, 504) or not isinstance(body, dict):
        message = body.get("message", "") if isinstance(body, dict) else ""
        raise DrainSelfError(f"the server on {host}:{port} answered {response.status} {message}".rstrip())
    return DrainSelfResult.from_json(response.status, body)
