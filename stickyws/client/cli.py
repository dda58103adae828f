"""``stickyws client URL --token T``: poke a deployment and watch the connection move.

Prints one line per event (``connected``, ``ack``, ``message``, ``reconnect``, ``closed``,
``backoff``...). Lines typed on stdin are sent as messages (JSON when they parse, else as a
string); ``--every S`` sends a numbered message every S seconds; ``--count N`` stops after N
messages are confirmed. Ctrl-C closes the connection with 1000 and prints a summary.

Exit status: 0 after Ctrl-C, ``--count`` or ``--duration``; 1, with one ``stickyws: ...`` line on
stderr saying what to check, when the client stopped for good (a refused handshake, a final close
code, a server that does not speak ``stickyws.v1``) or ``--duration`` ended before any connection.
A server that does not speak ``stickyws.v1`` (no subprotocol in its upgrade answer, or no
``connected`` frame within ``--connect-timeout-s``) stops the client at once: reconnecting cannot fix it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
import time
from typing import Any, TextIO

from stickyws.cli_errors import CommandError
from stickyws.settings import from_env

ENV_TOKEN = "STICKYWS_TOKEN"
#: Default of ``--connect-timeout-s``: bound on each handshake and on the wait for the ``connected`` frame.
DEFAULT_CONNECT_TIMEOUT_S = 10.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``client``."""
    p = subparsers.add_parser(
        "client",
        help="connect the reference client to a stickyws endpoint and print what happens",
        description="Connect, resume and resend across reconnects; print one line per event.",
    )
    p.add_argument("url", help="WebSocket URL, e.g. wss://ws.example.com/ws or ws://127.0.0.1:PORT/ws")
    p.add_argument("--token", default=None, help=f"connection token (default: ${ENV_TOKEN})")
    p.add_argument("--every", type=float, default=None, metavar="S", help="send a numbered message every S seconds")
    p.add_argument("--count", type=int, default=None, metavar="N", help="exit after N messages are confirmed")
    p.add_argument("--no-cookies", action="store_true", help="do not send the load balancer cookie (no stickiness)")
    p.add_argument("--quiet-acks", action="store_true", help="do not print ack and message lines")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="exit after S seconds")
    p.add_argument(
        "--connect-timeout-s",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT_S,
        metavar="S",
        help=f"bound on each handshake (then retry) and on the wait for the server's `connected` frame after it "
        f"(then exit 1: not a stickyws.v1 server); default {DEFAULT_CONNECT_TIMEOUT_S:g}",
    )
    p.set_defaults(run=run_client)


def describe(kind: str, detail: dict[str, Any]) -> str:
    """One readable line for an event (without the timestamp)."""
    # Only when a client runs (start-up time: `stickyws --help` imports every command module; the client loads aiohttp).
    from stickyws.client.connection import CLOSE_PROTOCOL_ERROR
    from stickyws.client.policy import close_name

    if kind == "connecting":
        cookies = ",".join(detail.get("cookies", [])) or "none"
        return f"connecting  resume={'yes' if detail.get('resume') else 'no'} cookies={cookies}"
    if kind == "connected":
        resumed = "yes" if detail.get("resumed") else "no"
        return (
            f"connected   server={detail.get('server')} session={detail.get('session')} resumed={resumed} "
            f"lastClientId={detail.get('last_client_id')} resending={detail.get('resending')}"
        )
    if kind == "ack":
        return f"ack         #{detail.get('id')}" + (" (duplicate: handled before)" if detail.get("duplicate") else "")
    if kind == "message":
        return f"message     seq={detail.get('seq')} {json.dumps(detail.get('data'))}"
    if kind == "error":
        return f"error       {detail.get('code')}: {detail.get('message')}"
    if kind == "reconnect_requested":
        return f"reconnect   server says {detail.get('reason')}, retry after {detail.get('retry_after_ms')} ms"
    if kind == "closed":
        code = detail.get("code")
        if code == CLOSE_PROTOCOL_ERROR:
            return f"closed      {code} (protocol error)"
        return f"closed      {close_name(code)}" if code is not None else f"closed      {detail.get('reason')}"
    if kind == "rejected":
        retry = detail.get("retry_after_s")
        return f"rejected    HTTP {detail.get('status')}" + (f", Retry-After {retry:g} s" if retry is not None else "")
    if kind == "backoff":
        return f"backoff     {detail.get('delay_s', 0):.2f} s (attempt {detail.get('attempt')}): {detail.get('reason')}"
    if kind == "stopped":
        return f"stopped     {detail.get('reason')}"
    return f"{kind:<11} {detail}"


def run_client(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``stickyws client``: connect and print events until Ctrl-C, ``--count`` or ``--duration``."""
    token = args.token or os.environ.get(ENV_TOKEN)
    if not token:
        raise CommandError(f"no token: pass --token or set {ENV_TOKEN} (the twin prints one; or stickyws token)")
    if not args.url.startswith(("ws://", "wss://")):
        raise CommandError(f"{args.url!r} is not a ws:// or wss:// URL")
    if not args.connect_timeout_s > 0:
        raise CommandError("--connect-timeout-s must be a positive number of seconds")
    try:
        return asyncio.run(_main(args, token, out or sys.stdout))
    except KeyboardInterrupt:
        return 130


async def _main(args: argparse.Namespace, token: str, out: TextIO) -> int:
    # Only when a client runs (start-up time: `stickyws --help` imports every command module; the client loads aiohttp).
    from stickyws.client.connection import CLOSED_BY_APPLICATION, Event, StickyClient

    start = time.monotonic()
    quiet = {"ack", "message"} if args.quiet_acks else set()
    last_failure: list[str] = []  # why the latest attempt did not connect (a backoff's reason)

    def show(event: Event) -> None:
        if event.kind == "backoff":
            last_failure[:] = [str(event.detail.get("reason"))]
        if event.kind not in quiet:
            print(f"{event.at - start:8.3f}  {describe(event.kind, event.detail)}", file=out, flush=True)

    client = StickyClient(
        args.url,
        token,
        settings=from_env(os.environ),
        on_event=show,
        use_cookies=not args.no_cookies,
        connect_timeout_s=args.connect_timeout_s,
    )
    client.start()
    loop = asyncio.get_running_loop()
    _start_stdin_reader(client, loop)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)  # Ctrl-C: close with 1000 and print the summary
    tasks = []
    if args.every:
        tasks.append(asyncio.create_task(_ticker(client, args.every)))
    try:
        async with asyncio.timeout(args.duration):
            while client.stop_reason is None and not stop.is_set():
                if args.count is not None and len(client.outbox.confirmations) >= args.count:
                    break
                await asyncio.sleep(0.05)
    except TimeoutError:
        pass
    finally:
        for task in tasks:
            task.cancel()
        await client.close()
    s = client.stats
    print(
        f"summary     connections={s.connects} servers={'>'.join(s.servers) or '-'} resumed={s.resumed} "
        f"sent={client.outbox.sent_count} confirmed={len(client.outbox.confirmations)} "
        f"resent={client.outbox.resent} unconfirmed={len(client.outbox.pending)}",
        file=out,
        flush=True,
    )
    if client.stop_reason and client.stop_reason != CLOSED_BY_APPLICATION:
        print(f"stickyws: {client.stop_reason}", file=sys.stderr, flush=True)
        return 1
    if s.connects == 0 and not stop.is_set():
        why = f"; last attempt: {last_failure[0]}" if last_failure else ""
        print(
            f"stickyws: no connection within {time.monotonic() - start:.1f} s (--duration){why}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0


async def _ticker(client: Any, every_s: float) -> None:
    n = 0
    while True:
        n += 1
        client.send({"n": n})
        await asyncio.sleep(every_s)


def _start_stdin_reader(client: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Send every stdin line from a daemon thread (a blocked read must not hold up the exit)."""

    def read() -> None:
        for line in sys.stdin:
            text = line.strip()
            if not text:
                continue
            try:
                data: Any = json.loads(text)
            except ValueError:
                data = text
            loop.call_soon_threadsafe(client.send, data)

    threading.Thread(target=read, name="stickyws-client-stdin", daemon=True).start()
