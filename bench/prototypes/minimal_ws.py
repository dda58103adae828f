"""The stickyws frames on a bare WebSocket layer, no registry: what the layer itself costs.

    python -m bench.prototypes.minimal_ws --layer aiohttp|picows --port PORT

On upgrade (subprotocol ``stickyws.v1``) it sends a ``connected`` frame; each ``send`` frame is
parsed with :mod:`stickyws.json_codec` and answered with a ``message`` (the data echoed) and an
``ack``, as the reference server's echo handler does. It holds no session or registry state, so it
bounds from above what the reference server could reach on that layer. Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import uvloop

from stickyws import json_codec, protocol

CONNECTED = protocol.dumps(
    {"type": "connected", "serverId": "proto", "sessionId": "s", "protocol": protocol.SUBPROTOCOL}
)


def answer(text: str | bytes, seq: int) -> tuple[str, str] | None:
    """``(message frame, ack frame)`` for a send frame, else ``None``."""
    try:
        parsed = protocol.parse_client_frame(text)
    except protocol.ProtocolError:
        return None
    if not isinstance(parsed, tuple):
        return None
    return protocol.message_raw(seq, json_codec.dumps(parsed[1])), protocol.ack(parsed[0])


async def serve_aiohttp(port: int, stop: asyncio.Event) -> None:
    from aiohttp import WSMsgType, web

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=(protocol.SUBPROTOCOL,), autoping=True, heartbeat=None)
        await ws.prepare(request)
        writer = ws._writer
        assert writer is not None
        writer._write_websocket_frame(CONNECTED.encode(), WSMsgType.TEXT, 0)
        seq = 0
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                seq += 1
                out = answer(msg.data, seq)
                if out is not None:
                    writer._write_websocket_frame(out[0].encode(), WSMsgType.TEXT, 0)
                    writer._write_websocket_frame(out[1].encode(), WSMsgType.TEXT, 0)
        return ws

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "serving"})

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    await stop.wait()
    await runner.cleanup()


async def serve_picows(port: int, stop: asyncio.Event) -> None:
    import picows

    class Listener(picows.WSListener):  # type: ignore[misc]
        __slots__ = ("seq",)

        def on_ws_connected(self, transport: picows.WSTransport) -> None:
            self.seq = 0
            transport.send(picows.WSMsgType.TEXT, CONNECTED.encode())

        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            if frame.msg_type == picows.WSMsgType.TEXT:
                self.seq += 1
                out = answer(frame.get_payload_as_bytes(), self.seq)
                if out is not None:
                    transport.send(picows.WSMsgType.TEXT, out[0].encode())
                    transport.send(picows.WSMsgType.TEXT, out[1].encode())
            elif frame.msg_type == picows.WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    def factory(request: picows.WSUpgradeRequest) -> object:
        path = request.path if isinstance(request.path, str) else request.path.decode()
        if path.startswith("/health"):
            ok = picows.WSUpgradeResponse.create_ok_response(b'{"status":"serving"}')
            return picows.WSUpgradeResponseWithListener(ok, None)
        response = picows.WSUpgradeResponse.create_101_response(
            extra_headers={"Sec-WebSocket-Protocol": protocol.SUBPROTOCOL}
        )
        return picows.WSUpgradeResponseWithListener(response, Listener())

    server = await picows.ws_create_server(
        factory, "127.0.0.1", port, backlog=1024, read_buffer_init_size=1024, use_aiofastnet=False
    )
    await stop.wait()
    server.close()


def main() -> None:
    p = argparse.ArgumentParser(prog="minimal_ws")
    p.add_argument("--layer", choices=("aiohttp", "picows"), required=True)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if os.environ.get("PROTO_TRACEMALLOC"):  # SIGUSR1 prints where the traced memory is (bench/findings.md)
            import tracemalloc

            tracemalloc.start()

            def dump() -> None:
                snap = tracemalloc.take_snapshot()
                for stat in snap.statistics("lineno")[:15]:
                    print(stat, file=sys.stderr, flush=True)
                print("total traced", tracemalloc.get_traced_memory(), file=sys.stderr, flush=True)

            loop.add_signal_handler(signal.SIGUSR1, dump)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await (serve_aiohttp if args.layer == "aiohttp" else serve_picows)(args.port, stop)

    uvloop.run(run())


if __name__ == "__main__":
    main()
