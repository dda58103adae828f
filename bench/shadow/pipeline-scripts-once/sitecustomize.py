"""Bench experiment: redis-py's async pipeline sends ``SCRIPT EXISTS`` before every execute that runs a
script (``Pipeline.load_scripts``): one extra round trip per batch of commits. With this folder first on
PYTHONPATH, a script whose SHA this process has already confirmed is not checked again. For measuring
only: a Redis that lost its scripts would answer NOSCRIPT, which the registry would then have to handle.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import client as _client

_confirmed: set[str] = set()
_original = _client.Pipeline.load_scripts


async def _load_scripts_once(self: Any) -> None:
    if all(s.sha in _confirmed for s in self.scripts):
        return
    await _original(self)
    _confirmed.update(s.sha for s in self.scripts)


_client.Pipeline.load_scripts = _load_scripts_once  # type: ignore[method-assign]
