"""Reading a child process's output in tests: lines awaited with deadlines, never with sleeps."""

from __future__ import annotations

import queue
import re
import threading
import time
from typing import Any

#: The default bound on waiting for one line.
BOUND_S = 20.0


class Stream:
    """The lines of one pipe of a child process, read by a thread and awaited with deadlines."""

    def __init__(self, pipe: Any) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: Any) -> None:
        for line in pipe:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, pattern: str, timeout_s: float = BOUND_S) -> re.Match[str]:
        """The first new line matching ``pattern``; fails after ``timeout_s`` with what was seen."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; saw:\n" + "\n".join(self.lines)) from None
            if line is None:
                raise AssertionError(f"exited before {pattern!r}; saw:\n" + "\n".join(self.lines))
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def rest(self) -> list[str]:
        """Every line, once the pipe is closed (the process has exited); idempotent."""
        self._thread.join(timeout=BOUND_S)
        assert not self._thread.is_alive()
        while not self._queue.empty():
            line = self._queue.get_nowait()
            if line is not None:
                self.lines.append(line)
        return self.lines
