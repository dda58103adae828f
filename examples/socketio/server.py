"""A Socket.IO chat-style echo server (python-socketio, ASGI under uvicorn) for the local twin.

Run it behind the twin's HAProxy, three copies sharing one Redis::

    stickyws twin up --servers 3 --health-path /health \\
        --server-cmd "python examples/socketio/server.py --port {port} --server-id {server_id} --redis-url {redis_url}"

What it serves:

* ``/socket.io/``: Socket.IO (Engine.IO polling first, then the WebSocket upgrade). The
  ``AsyncRedisManager`` on ``--redis-url`` carries broadcasts between the servers, so an ``emit``
  to a room reaches clients on every server. It does NOT share Engine.IO sessions: every polling
  request of a session must reach the server that created it (the load balancer's stickiness).
* event ``echo``: answers (Socket.IO acknowledgement) ``{"data": ..., "server": SERVER_ID, "transport": ...}``;
* event ``shout``: broadcast ``{"data": ..., "from": SERVER_ID}`` as event ``shouted`` to every client
  on every server (through Redis);
* ``GET /health``: 200 ``{"status": "serving", "serverId": ..., "clients": N}``.

It reads no drain notice: on SIGTERM uvicorn stops accepting, closes the open connections and
exits (within 2 s), and Socket.IO clients reconnect on their own.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import socketio
import uvicorn


def build_app(server_id: str, redis_url: str) -> tuple[socketio.AsyncServer, Any]:
    """The Socket.IO server and the ASGI app that serves it plus ``/health``."""
    manager = socketio.AsyncRedisManager(redis_url, channel="socketio-example")
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, cors_allowed_origins=[])
    clients: set[str] = set()

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        clients.add(sid)

    @sio.event
    async def disconnect(sid: str, reason: Any = None) -> None:
        clients.discard(sid)

    @sio.event
    async def echo(sid: str, data: Any) -> dict[str, Any]:
        return {"data": data, "server": server_id, "transport": sio.transport(sid)}

    @sio.event
    async def shout(sid: str, data: Any) -> None:
        await sio.emit("shouted", {"data": data, "from": server_id})

    async def health(scope: dict[str, Any], receive: Any, send: Any) -> None:
        found = scope["type"] == "http" and scope["path"] == "/health"
        body = json.dumps({"status": "serving", "serverId": server_id, "clients": len(clients)}) if found else ""
        headers = [(b"content-type", b"application/json")] if found else []
        await send({"type": "http.response.start", "status": 200 if found else 404, "headers": headers})
        await send({"type": "http.response.body", "body": body.encode()})

    return sio, socketio.ASGIApp(sio, other_asgi_app=health)


def main() -> None:
    """Parse the flags and serve on 127.0.0.1 until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-id", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    _, app = build_app(args.server_id, args.redis_url)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)


if __name__ == "__main__":
    main()
