"""The reference server's backend in the fan-out scenarios: :class:`stickyws.publish.Publisher`.

    python -m bench.fanout_pub REDIS_URL

Reads ``PHASE TOPIC`` lines on stdin (the load generator paces them) and publishes
``{"p": PHASE, "ts": <wall clock in microseconds>}`` to ``TOPIC``, at most :data:`IN_FLIGHT` at a
time; exits when stdin closes, after the last publish is answered. Errors go to stderr, one line each.
"""

from __future__ import annotations

import asyncio
import sys
import time

from stickyws.publish import Publisher, PublishError

#: Publishes awaited concurrently (the registry pool holds 8 connections).
IN_FLIGHT = 64


async def main(url: str) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    slots = asyncio.Semaphore(IN_FLIGHT)
    failures = 0
    pending: set[asyncio.Task[None]] = set()

    async with Publisher(url) as pub:

        async def one(phase: str, topic: str) -> None:
            nonlocal failures
            try:
                await pub.publish(topic, {"p": phase, "ts": time.time_ns() // 1000})
            except PublishError as exc:
                failures += 1
                print(f"fanout_pub: {topic}: {exc}", file=sys.stderr, flush=True)
            finally:
                slots.release()

        while line := await reader.readline():
            parts = line.decode().split()
            if len(parts) != 2:
                continue
            await slots.acquire()
            task = asyncio.create_task(one(parts[0], parts[1]))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m bench.fanout_pub REDIS_URL", file=sys.stderr)
        raise SystemExit(2)
    import uvloop

    raise SystemExit(uvloop.run(main(sys.argv[1])))
