"""The publish endpoint's listener (:mod:`stickyws.publish.http`) on its own port, over aiohttp.

Backends call it, not browsers, at the rate of publications (not of client messages), so it runs
on aiohttp's HTTP server: request bodies, keep-alive and limits come with it.
"""

from __future__ import annotations

from aiohttp import web

from stickyws.publish import Publisher
from stickyws.publish import http as publish_http
from stickyws.server.core import ServerCore


def build_publish_app(core: ServerCore, key: str) -> web.Application:
    """The publish endpoint on the core's registry and settings, guarded by ``key``."""
    publisher = Publisher(registry=core.registry, settings=core.settings)
    limit = core.settings.delivery.max_publish_bytes + 1024

    async def publish(request: web.Request) -> web.Response:
        refused = publish_http.check_key(request.headers, key)
        if refused is not None:
            return web.json_response(refused[1], status=refused[0])
        if request.content_length is not None and request.content_length > limit:
            status, body = 413, {"error": "too_large", "message": f"request body over {limit} bytes"}
        else:
            try:
                raw = await request.content.read(limit + 1)
            except (ConnectionError, RuntimeError, web.HTTPException):
                raw = b"\xff" * (limit + 1)
            status, body = await publish_http.handle(publisher, raw)
        if status == 200:
            core.metrics.count("Publications")
        return web.json_response(body, status=status)

    app = web.Application(client_max_size=limit + 1)
    app.router.add_post(publish_http.PATH, publish)
    return app


class PublishListener:
    """The publish endpoint bound to ``host:port``: ``await start()``, ``await stop()`` (idempotent)."""

    def __init__(self, core: ServerCore, key: str, host: str, port: int) -> None:
        self._runner = web.AppRunner(build_publish_app(core, key), handle_signals=False, access_log=None)
        self.host = host
        self.port = port
        self._started = False

    async def start(self) -> None:
        """Bind and serve (raises ``OSError`` when the port is taken)."""
        await self._runner.setup()
        self._started = True
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        """Stop listening and end open requests."""
        if self._started:
            self._started = False
            await self._runner.cleanup()
