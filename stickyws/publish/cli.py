"""``stickyws publish``: push one user message or one topic publication from the command line.

``stickyws publish --user ID JSON`` or ``stickyws publish --topic NAME JSON`` (registry from
``REDIS_URL``) prints what was assigned as one JSON line and exits 0; bad input (not JSON, too
large, a bad name) or an unreachable registry is one line on stderr and exit 2. A user without a
session prints ``{"status": "no_session", ...}`` and exits 0, or exits 2 with ``--require-session``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``publish``."""
    pub = subparsers.add_parser("publish", help="push a message to a user or publish it to a topic (REDIS_URL)")
    target = pub.add_mutually_exclusive_group(required=True)
    target.add_argument("--user", help="user id: append to the user's session and deliver")
    target.add_argument("--topic", help="topic name: append to the topic's log and deliver to its subscribers")
    pub.add_argument("data", metavar="JSON", help='the payload, a JSON value (e.g. \'{"text":"hi"}\')')
    pub.add_argument("--require-session", action="store_true", help="fail (exit 2) when the user has no session")
    pub.add_argument("--key", help="idempotency key of a push to a user: the same key again delivers nothing new")
    pub.set_defaults(run=run_publish)


def _fail(message: str) -> int:
    print(f"stickyws: {message}", file=sys.stderr)
    return 2


def run_publish(args: argparse.Namespace) -> int:
    """Run ``stickyws publish``."""
    from stickyws.publish import Publisher, PublishError
    from stickyws.settings import SettingsError

    try:
        data = json.loads(args.data)
    except ValueError as exc:
        return _fail(f"JSON is not valid JSON ({exc}): quote strings, e.g. '\"hello\"'")

    async def go() -> dict[str, Any]:
        async with Publisher() as pub:
            if args.user is not None:
                sent = await pub.send_to_user(args.user, data, require_session=args.require_session, key=args.key)
                return sent.as_dict()
            result = await pub.publish(args.topic, data)
            return {"topic": result.topic, "offset": result.offset, "epoch": result.epoch}

    try:
        body = asyncio.run(go())
    except PublishError as exc:
        return _fail(f"{exc} [{exc.code}]")
    except SettingsError as exc:
        return _fail(str(exc))
    print(json.dumps(body, separators=(",", ":")))
    return 0
