"""Reconnect backoff: exponential with full jitter, floored by the server's hint. Pure.

``delay = hint + uniform(0, min(cap, base * 2**attempt))`` where ``attempt`` counts the failed
tries since the last good connection (0 for the first retry) and ``hint`` is the server's
``retryAfterMs`` (reconnect frame) or ``Retry-After`` (503), 0 without one. The hint is a floor,
never shortened by the cap: the server knows when it can take the client back. The jitter on top
keeps clients that got the same hint (every 503 says ``Retry-After: 1``) from coming back together.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

from stickyws.settings import Settings


@dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff between ``0`` and ``cap_s``, doubling from ``base_s``."""

    base_s: float
    cap_s: float

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s:
            raise ValueError(f"need 0 < base_s <= cap_s, got base_s={self.base_s:g}, cap_s={self.cap_s:g}")

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        """The backoff ``reconnect_base_ms`` / ``reconnect_cap_s`` describe."""
        return cls(base_s=settings["reconnect_base_ms"] / 1000, cap_s=float(settings["reconnect_cap_s"]))

    def ceiling_s(self, attempt: int) -> float:
        """Largest jitter for retry number ``attempt`` (0-based): ``min(cap, base * 2**attempt)``."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        return min(self.cap_s, self.base_s * 2.0 ** min(attempt, 64))

    def bound_s(self, attempt: int, hint_s: float | None = None) -> float:
        """The longest :meth:`delay_s` can be for these arguments."""
        return (hint_s or 0.0) + self.ceiling_s(attempt)

    def delay_s(self, attempt: int, hint_s: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``attempt``: ``hint + uniform(0, ceiling(attempt))``."""
        jitter = (rng or random).uniform(0.0, self.ceiling_s(attempt))
        return max(0.0, hint_s or 0.0) + jitter


def parse_retry_after(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date); ``None`` if absent or bad."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now_s is None else now_s))
