"""A Starlette WebSocket echo app that moves its clients before the load balancer cuts them.

Run it behind the local twin, three copies sharing one Redis (from the repository root)::

    stickyws twin up --servers 3 \\
        --server-cmd "python examples/asgi/app.py --port {port} --server-id {server_id} --redis-url {redis_url}"

What it serves:

* ``/ws``: WebSocket. First frame ``{"type": "connected", "serverId": ...}``; every text frame comes
  back as ``{"type": "echo", "data": <text>, "serverId": ...}``.
* ``/health``: 200 ``{"status": "serving", "serverId", "connections"}``, 503 ``"draining"`` once draining.

Drain (``--drain on``, the default; ``--drain off`` or ``DRAIN_HELPER=off`` turns it off): on this
server's drain notice (stickyws_drain.py, docs/drain-contract.md) it refuses new WebSockets and sends
each open one ``{"type": "reconnect", "reason": "server_draining", "retryAfterMs": ...}`` and close
1012, at moments spread with jitter over the drain window (``STICKYWS_DRAIN_WINDOW_S``). SIGTERM:
uvicorn closes what is left and the app exits 0 within ``STICKYWS_SHUTDOWN_TIMEOUT_S``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from stickyws_drain import spread_delays, watch_drain

#: RFC 6455 "Service Restart": the server is going away, reconnect (to another server).
CLOSE_SERVICE_RESTART = 1012
#: Largest extra wait told to a client in ``retryAfterMs``.
MAX_RETRY_JITTER_MS = 500
#: What a send or close on a socket that its client already closed raises (Starlette, uvicorn).
GONE = (WebSocketDisconnect, RuntimeError, OSError)


def build_app(server_id: str, redis_url: str | None, *, drain: bool, window_s: float) -> Starlette:
    """The echo app; with ``drain`` it watches ``server_id``'s drain notice on ``redis_url`` (then required)."""
    if drain and not redis_url:
        raise ValueError("the drain helper needs the registry: pass --redis-url or set REDIS_URL (or --drain off)")
    sockets: set[WebSocket] = set()
    draining = asyncio.Event()
    rng = random.Random()

    async def tell_to_reconnect(ws: WebSocket) -> None:
        with contextlib.suppress(*GONE):
            retry_ms = rng.randint(0, MAX_RETRY_JITTER_MS)
            await ws.send_json({"type": "reconnect", "reason": "server_draining", "retryAfterMs": retry_ms})
            await ws.close(CLOSE_SERVICE_RESTART, "server draining")

    async def on_drain(window_left_s: float) -> None:
        draining.set()
        targets = list(sockets)
        rng.shuffle(targets)
        loop = asyncio.get_running_loop()
        started, told = loop.time(), []
        for at_s, ws in zip(spread_delays(len(targets), window_left_s, rng), targets, strict=True):
            await asyncio.sleep(max(0.0, started + at_s - loop.time()))
            told.append(asyncio.create_task(tell_to_reconnect(ws)))  # a slow client must not hold up the others
        await asyncio.gather(*told)

    async def echo(ws: WebSocket) -> None:
        if draining.is_set():
            await ws.close(CLOSE_SERVICE_RESTART)  # before accept: the handshake is refused, the client retries
            return
        await ws.accept()
        sockets.add(ws)
        try:
            if draining.is_set():  # the drain began while this handshake completed
                await tell_to_reconnect(ws)
                return
            await ws.send_json({"type": "connected", "serverId": server_id})
            while True:
                text = await ws.receive_text()
                await ws.send_json({"type": "echo", "data": text, "serverId": server_id})
        except GONE:
            pass
        finally:
            sockets.discard(ws)

    async def health(request: Request) -> JSONResponse:
        status = "draining" if draining.is_set() else "serving"
        body = {"status": status, "serverId": server_id, "connections": len(sockets)}
        return JSONResponse(body, status_code=503 if draining.is_set() else 200)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        watcher = None
        if drain and redis_url:
            watcher = asyncio.create_task(watch_drain(redis_url, server_id, window_s, on_drain))
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    return Starlette(routes=[Route("/health", health), WebSocketRoute("/ws", echo)], lifespan=lifespan)


def ecs_task_id(env: Mapping[str, str]) -> str | None:
    """The ECS task id (last part of the task ARN from the task metadata endpoint v4), or ``None`` off ECS."""
    base = env.get("ECS_CONTAINER_METADATA_URI_V4")
    if not base:
        return None
    with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(base + "/task", timeout=2) as reply:
        arn = json.loads(reply.read()).get("TaskARN")
        return str(arn).rsplit("/", 1)[-1] if arn else None
    return None


def _seconds(parser: argparse.ArgumentParser, name: str, default: float | None) -> float | None:
    """Setting ``name`` from ``STICKYWS_<NAME>`` (``off`` is ``None``), else ``default``."""
    text = os.environ.get(f"STICKYWS_{name.upper()}", "").strip()
    if not text:
        return default
    if text == "off":
        return None
    try:
        return float(text)
    except ValueError:
        parser.error(f"STICKYWS_{name.upper()}={text!r} is not a number of seconds: set it like 45 or 1.5")


def main(argv: list[str] | None = None) -> None:
    """Parse the flags and serve until SIGTERM."""
    env = os.environ
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=env.get("STICKYWS_PORT", "8080"))
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 in a container")
    parser.add_argument("--server-id", default=env.get("STICKYWS_SERVER_ID") or ecs_task_id(env))
    parser.add_argument("--redis-url", default=env.get("REDIS_URL"))
    parser.add_argument("--drain", choices=("on", "off"), default=env.get("DRAIN_HELPER", "on"))
    args = parser.parse_args(argv)
    if args.drain not in ("on", "off"):
        parser.error(f"DRAIN_HELPER={args.drain!r}: set it to on or off")
    if not args.server_id:
        parser.error("no server id: pass --server-id or set STICKYWS_SERVER_ID (on ECS: the task id, found itself)")
    window_s = _seconds(parser, "drain_window_s", 45.0) or 0.0
    try:
        app = build_app(args.server_id, args.redis_url, drain=args.drain == "on", window_s=window_s)
    except ValueError as exc:
        parser.error(str(exc))
    options: dict[str, Any] = {
        "ws_ping_interval": _seconds(parser, "ping_interval_s", 20.0),
        "ws_ping_timeout": _seconds(parser, "ping_timeout_s", 20.0),
        "timeout_graceful_shutdown": _seconds(parser, "shutdown_timeout_s", 10.0),
    }
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again: this handler makes that exit 0.
    signal.signal(signal.SIGTERM, _exit_0)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", **options)


def _exit_0(signum: int, frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
