"""The registry's Lua scripts, read once from the ``.lua`` files beside this module.

Each file's comment header gives its ``KEYS``/``ARGV`` layout and reply. ``outbox.lua`` holds the
outbox helpers (the outbox rule of :mod:`stickyws.registry.records` in Lua) and is put in front of the
scripts that use them, so each script is one self-contained source with one SHA.
"""

from __future__ import annotations

from importlib.resources import files

from stickyws.registry.redis_lane import LaneScript


def source(name: str) -> str:
    """The text of ``<name>.lua``."""
    return (files(__name__) / f"{name}.lua").read_text(encoding="utf-8")


_OUTBOX = source("outbox")

HANDSHAKE = LaneScript(_OUTBOX + source("handshake"))
COMMIT = LaneScript(_OUTBOX + source("commit"))
PUSH = LaneScript(_OUTBOX + source("push"))
PUBLISH_TOPIC = LaneScript(source("publish_topic"))
TOPIC_SINCE = LaneScript(source("topic_since"))
OUTBOX_READ = LaneScript(_OUTBOX + source("outbox_read"))
RELEASE = LaneScript(source("release"))
RECONCILE = LaneScript(_OUTBOX + source("reconcile"))
