"""The HTTP publish endpoint's logic (``POST /v1/publish`` on ``publish_port``), free of any web framework.

For backends in any language. The ALB never routes this port: the stack opens it only to the
security groups that are allowed to publish. Request::

    POST /v1/publish
    Authorization: Bearer <publish key>          (or X-Stickyws-Publish-Key: <publish key>)
    Content-Type: application/json

    {"user": "alice", "data": {...}}             -> 200 {"status","seq","sessionId","serverId"}
    {"user": "alice", "data": {...}, "key": "k"} -> the same once per key ("duplicate": true after that)
    {"topic": "prices", "data": {...}}           -> 200 {"topic","offset","epoch"}

Errors are JSON ``{"error": code, "message": text}``: 400 ``bad_json``/``bad_request``/``bad_data``/
``bad_user``/``bad_topic``/``bad_key``, 401 ``missing_key``, 403 ``invalid_key``, 404 ``no_session`` (only with
``"requireSession": true``), 413 ``too_large``, 503 ``registry_unavailable``. Nothing is stored
unless the answer is 200.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any

from stickyws.publish import Publisher, PublishError

PATH = "/v1/publish"
KEY_HEADER = "X-Stickyws-Publish-Key"
#: HTTP status of each :class:`PublishError` code.
STATUS = {
    "bad_data": 400,
    "bad_user": 400,
    "bad_topic": 400,
    "no_session": 404,
    "too_large": 413,
    "registry_unavailable": 503,
}


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": code, "message": message}


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The publish key a request carries (``Authorization: Bearer`` or :data:`KEY_HEADER`)."""
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get(KEY_HEADER) or None


def check_key(headers: Mapping[str, str], key: str) -> tuple[int, dict[str, Any]] | None:
    """``None`` when the request carries ``key``; else the 401/403 answer."""
    given = presented_key(headers)
    if given is None:
        return _error(401, "missing_key", f"send the publish key as 'Authorization: Bearer <key>' or {KEY_HEADER}")
    if not hmac.compare_digest(given.encode(), key.encode()):
        return _error(403, "invalid_key", "the publish key is not valid")
    return None


async def handle(publisher: Publisher, body: bytes) -> tuple[int, dict[str, Any]]:
    """Answer one authenticated request body: ``(status, JSON body)``."""
    limit = publisher.settings["max_publish_bytes"]
    if len(body) > limit + 1024:
        return _error(413, "too_large", f"request body over {limit + 1024} bytes (max_publish_bytes + 1 KiB)")
    try:
        request = json.loads(body)
    except ValueError:
        return _error(400, "bad_json", "the body is not JSON")
    if not isinstance(request, dict) or "data" not in request or (("user" in request) == ("topic" in request)):
        return _error(400, "bad_request", 'send {"user": ID, "data": ...} or {"topic": NAME, "data": ...}')
    try:
        if "user" in request:
            result = await publisher.send_to_user(
                request["user"],
                request["data"],
                require_session=request.get("requireSession") is True,
                key=request.get("key"),
            )
            return 200, result.as_dict()
        publication = await publisher.publish(request["topic"], request["data"])
    except PublishError as exc:
        return _error(STATUS.get(exc.code, 400), exc.code, str(exc))
    return 200, {"topic": publication.topic, "offset": publication.offset, "epoch": publication.epoch}
