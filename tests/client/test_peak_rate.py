"""The peak reconnect rate is the densest sliding window of reconnect times, per second."""

from __future__ import annotations

from stickyws.client.connection import peak_rate_per_s


def test_peak_is_the_densest_window() -> None:
    """Three reconnects within 0.2 s beat two spread over a second: 3 per 0.25 s window = 12/s."""
    times = [10.0, 10.9, 20.0, 20.1, 20.2, 30.0]
    assert peak_rate_per_s(times, window_s=0.25) == 12.0
    assert peak_rate_per_s(times, window_s=1.0) == 3.0


def test_no_reconnects_is_zero() -> None:
    """An empty timeline has a peak of 0."""
    assert peak_rate_per_s([]) == 0.0
