"""This machine as the benchmarks use it: which core runs what, the open-file limit, a pinned Redis.

A leaf of the bench package (it imports nothing from ``bench``): the runner (:mod:`bench.run`) and the
side-by-side variants (:mod:`bench.variants`) both take these from here, so no module that the runner
imports imports the runner back.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterator

from stickyws.localproc import RedisServer

#: Every server under test runs on ``SERVER_CORE``; the load generator and Redis share ``GEN_CORE``.
SERVER_CORE, GEN_CORE = 0, 1
#: Open-file limit wanted for 20k connections per process (raised when we are allowed to).
NOFILE = 65_536
#: File descriptors a server or the generator needs beside its connections (Redis pool, listener, logs).
FD_SPARE = 300


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE (inherited by the servers and the generator); returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, max(hard, NOFILE)))
        return NOFILE
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


@contextlib.contextmanager
def redis_on(core: int | None) -> Iterator[RedisServer]:
    """A throwaway redis-server pinned to ``core`` (not pinned when ``core`` is None); stopped on exit."""
    server = RedisServer().start()
    try:
        if core is not None and server.pid is not None:
            os.sched_setaffinity(server.pid, {core})
        yield server
    finally:
        server.__exit__(None, None, None)
