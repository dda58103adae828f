"""A burst of simultaneous connects while the event loop is busy is queued by the kernel, not dropped."""

from __future__ import annotations

import asyncio
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from stickyws.server.ws_adapter import LISTEN_BACKLOG
from tests.server.helpers import run, server

BURST = 600


def _connect(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_burst_of_connects_fits_the_listen_queue() -> None:
    """600 connects that arrive while the server's loop is blocked all complete within 0.5 s each."""
    assert LISTEN_BACKLOG >= BURST

    async def scenario() -> list[bool]:
        async with server() as rs:
            loop = asyncio.get_running_loop()
            with ThreadPoolExecutor(max_workers=64) as pool:
                futures = [loop.run_in_executor(pool, _connect, rs.port) for _ in range(BURST)]
                time.sleep(0.3)  # noqa: ASYNC251 -- deliberately block the loop: the kernel must queue the burst
                return list(await asyncio.gather(*futures))

    results = run(scenario(), timeout_s=30)
    assert results.count(True) == BURST
