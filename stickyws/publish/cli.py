"""``stickyws publish``: push one user message or one topic publication from the command line.

``stickyws publish --user ID JSON`` or ``stickyws publish --topic NAME JSON`` prints what was
assigned as one JSON line and exits 0. It goes through the registry (``REDIS_URL``), or with
``--endpoint http://HOST:PORT`` through a server's publish endpoint (key from
``STICKYWS_PUBLISH_KEY``): the way to reach ``stickyws serve --dev``, whose in-memory registry lives
in the server process. Bad input (not JSON, too large, a bad name), an unreachable registry or
endpoint, or a refused key is one line on stderr and exit 2. A user without a session prints
``{"status": "no_session", ...}`` and exits 0, or exits 2 with ``--require-session``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from stickyws.settings import ENV_PUBLISH_KEY, ENV_REDIS_URL, SettingsError

#: How long ``--endpoint`` waits for the publish endpoint's answer.
ENDPOINT_TIMEOUT_S = 10.0


def register(subparsers: Any) -> None:
    """Add ``publish``."""
    pub = subparsers.add_parser(
        "publish",
        help="push a message to a user or publish it to a topic (REDIS_URL, or a server's --endpoint)",
        description="Push through the registry (REDIS_URL), or through a server's publish endpoint "
        "(--endpoint, key from STICKYWS_PUBLISH_KEY; `stickyws serve --dev` prints both).",
    )
    target = pub.add_mutually_exclusive_group(required=True)
    target.add_argument("--user", help="user id: append to the user's session and deliver")
    target.add_argument("--topic", help="topic name: append to the topic's log and deliver to its subscribers")
    pub.add_argument("data", metavar="JSON", help='the payload, a JSON value (e.g. \'{"text":"hi"}\')')
    pub.add_argument("--require-session", action="store_true", help="fail (exit 2) when the user has no session")
    pub.add_argument("--key", help="idempotency key of a push to a user: the same key again delivers nothing new")
    pub.add_argument(
        "--endpoint",
        metavar="URL",
        help="send through a server's publish endpoint (http://HOST:PORT) instead of the registry; "
        "the key comes from STICKYWS_PUBLISH_KEY",
    )
    pub.set_defaults(run=run_publish)


def _fail(message: str) -> int:
    print(f"stickyws: {message}", file=sys.stderr)
    return 2


def run_publish(args: argparse.Namespace) -> int:
    """Run ``stickyws publish``."""
    try:
        data = json.loads(args.data)
    except ValueError as exc:
        return _fail(f"JSON is not valid JSON ({exc}): quote strings, e.g. '\"hello\"'")
    if args.endpoint:
        return _publish_through_endpoint(args, data)
    if not os.environ.get(ENV_REDIS_URL):
        return _fail(
            f"no registry URL: set {ENV_REDIS_URL}, or send through a server's publish endpoint with "
            f"--endpoint http://HOST:PORT and {ENV_PUBLISH_KEY} (`stickyws serve --dev` prints both) "
            "[registry_unavailable]"
        )
    return _publish_through_registry(args, data)


def _publish_through_registry(args: argparse.Namespace, data: Any) -> int:
    # Only when publishing (start-up time: `stickyws --help` imports this module; the publisher is larger).
    from stickyws.publish import Publisher, PublishError

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


def endpoint_url(endpoint: str) -> str | None:
    """The ``POST`` URL for ``--endpoint`` (``http://HOST:PORT`` or the full ``.../v1/publish``), or ``None``
    when it is not an http(s) URL."""
    from urllib.parse import urlsplit

    # Only with --endpoint (start-up time: `stickyws --help` imports this module; it loads the publisher).
    from stickyws.publish.http import PATH

    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    if parts.path.rstrip("/") in ("", PATH):
        return parts._replace(path=PATH).geturl()
    return None


def _publish_through_endpoint(args: argparse.Namespace, data: Any) -> int:
    """``POST /v1/publish`` with the key from the environment; the answer's JSON on stdout, or one error line."""
    import urllib.error
    import urllib.request

    # Only with --endpoint (start-up time: `stickyws --help` imports this module; it loads the publisher).
    from stickyws.publish.http import PATH

    url = endpoint_url(args.endpoint)
    if url is None:
        return _fail(f"--endpoint {args.endpoint!r} is not http://HOST:PORT (or http://HOST:PORT{PATH})")
    key = os.environ.get(ENV_PUBLISH_KEY, "")
    if not key:
        return _fail(
            f"--endpoint needs the server's publish key in {ENV_PUBLISH_KEY} (`stickyws serve --dev` prints it)"
        )
    request: dict[str, Any] = {"data": data}
    if args.user is not None:
        request["user"] = args.user
        if args.key is not None:
            request["key"] = args.key
        if args.require_session:
            request["requireSession"] = True
    else:
        request["topic"] = args.topic
    http_request = urllib.request.Request(
        url,
        data=json.dumps(request, separators=(",", ":")).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(http_request, timeout=ENDPOINT_TIMEOUT_S) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())
            return _fail(f"{error['message']} [{error['error']}]")
        except (ValueError, KeyError, TypeError, OSError):
            return _fail(f"{url} answered HTTP {exc.code}: check that --endpoint is a stickyws publish endpoint")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return _fail(
            f"cannot reach the publish endpoint {url} ({reason}): check the server runs with a publish key on "
            "that port (`stickyws serve --dev` prints its URL)"
        )
    try:
        body = json.loads(raw)
    except ValueError:
        return _fail(f"{url} answered 200 with a body that is not JSON: check that --endpoint is a stickyws server")
    print(json.dumps(body, separators=(",", ":")))
    return 0
