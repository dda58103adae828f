"""The reference server's backend in the fan-out scenarios: :class:`stickyws.publish.Publisher`.

    python -m bench.fanout_pub REDIS_URL

Reads ``PHASE TOPIC`` lines on stdin (the load generator paces them) and publishes
``{"p": PHASE, "ts": <wall clock in microseconds>}`` to ``TOPIC``, at most :data:`IN_FLIGHT` at a
time; exits when stdin closes, after the last publish is answered, printing one JSON line: how many
it published and the p50/p99 of the publish call (stamp to the registry's answer). Errors go to
stderr, one line each.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from stickyws.publish import Publisher, PublishError

#: Publishes awaited concurrently: the registry pool's size, so no stamped publish waits for a connection.
IN_FLIGHT = 8


async def main(url: str) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    slots = asyncio.Semaphore(IN_FLIGHT)
    failures = 0
    pending: set[asyncio.Task[None]] = set()
    call_ms: list[float] = []

    async with Publisher(url) as pub:

        async def one(phase: str, topic: str) -> None:
            nonlocal failures
            try:
                t0 = time.time_ns()
                await pub.publish(topic, {"p": phase, "ts": t0 // 1000})
                call_ms.append((time.time_ns() - t0) / 1e6)
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
    call_ms.sort()

    def pick(q: float) -> float:
        return call_ms[int(q * (len(call_ms) - 1))] if call_ms else 0.0

    print(json.dumps({"published": len(call_ms), "failures": failures, "call_p50_ms": pick(0.5),
                      "call_p99_ms": pick(0.99)}), flush=True)  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m bench.fanout_pub REDIS_URL", file=sys.stderr)
        raise SystemExit(2)
    import uvloop

    raise SystemExit(uvloop.run(main(sys.argv[1])))
