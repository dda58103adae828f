"""Send-on: a client moved by a drain must not settle on another server that is about to be drained.

A draining server with a revision tells its clients ``avoid=<revision>`` (:func:`stickyws.protocol.reconnect`).
A handshake that carries it and lands on a server of that same revision is sent on
(:meth:`stickyws.server.admission.Admissions.admit`) when the registry shows a live server that is not
draining and runs another revision: during a deployment the old revision is on its way out, so the
client goes on to a new one instead of moving twice. When no other revision is live (a scale-in, a
stop, a fleet of one revision) the handshake is admitted.

:func:`wants_send_on` and :func:`other_revision_live` are pure; :class:`RevisionView` reads the
heartbeats (``keys.heartbeat_key``, field ``keys.HEARTBEAT_REVISION``) at most once per
:data:`CACHE_S` however many handshakes ask. A registry that cannot be read counts as "no other
revision": the client is admitted, never bounced blind.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping

from stickyws import keys
from stickyws.registry.errors import RegistryUnavailable
from stickyws.registry.interfaces import GONE_STATUSES

#: How long one read of the heartbeats answers every handshake that asks (seconds).
CACHE_S = 1.0


def wants_send_on(avoid: str, revision: str) -> bool:
    """Whether a handshake asking to avoid ``avoid`` names this server's ``revision`` (both not empty)."""
    return bool(avoid) and avoid == revision


def other_revision_live(heartbeats: Mapping[str, str], revision: str) -> bool:
    """Whether any heartbeat value names a live server (not ``draining``/``stopped``) whose revision is
    another, non-empty one. Unreadable values and servers without a revision count as none."""
    for body in heartbeats.values():
        try:
            beat = json.loads(body)
        except ValueError:
            continue
        if not isinstance(beat, dict) or beat.get("status") in GONE_STATUSES:
            continue
        other = beat.get(keys.HEARTBEAT_REVISION)
        if isinstance(other, str) and other and other != revision:
            return True
    return False


class RevisionView:
    """The registry's revisions as one server sees them, read at most every :data:`CACHE_S` seconds.

    ``read`` returns every live heartbeat by server id (``Registry.server_heartbeats``); ``clock`` is
    monotonic seconds. Concurrent askers share one read.
    """

    def __init__(
        self,
        read: Callable[[], Awaitable[dict[str, str]]],
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_s: float = CACHE_S,
    ) -> None:
        self._read = read
        self._clock = clock
        self._cache_s = cache_s
        self._heartbeats: dict[str, str] = {}
        self._read_at: float | None = None
        self._reading: asyncio.Future[dict[str, str]] | None = None
        #: Reads made (for tests: the cache holds).
        self.reads = 0

    async def heartbeats(self) -> dict[str, str]:
        """The heartbeats of the last read, read again when older than the cache time ({} when unreadable)."""
        now = self._clock()
        if self._read_at is not None and now - self._read_at < self._cache_s:
            return self._heartbeats
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._fetch())
        reading = self._reading
        try:
            return await asyncio.shield(reading)
        finally:
            if self._reading is reading and reading.done():
                self._reading = None

    async def _fetch(self) -> dict[str, str]:
        self.reads += 1
        try:
            found = await self._read()
        except RegistryUnavailable:
            found = {}
        self._heartbeats, self._read_at = found, self._clock()
        return found

    async def other_live(self, revision: str) -> bool:
        """Whether the registry shows a live, non-draining server of a revision other than ``revision``."""
        return other_revision_live(await self.heartbeats(), revision)
