"""TwinCluster: settings are checked first, servers come and go through HAProxy, stop() leaves nothing."""

from __future__ import annotations

import os

import pytest

from stickyws.settings import SettingsError
from stickyws.twin import haproxy_config
from stickyws.twin.cluster import TwinCluster, TwinError
from tests.e2e.support import E2E_SETTINGS, TIME_SCALE, require_binaries


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_invalid_settings_are_refused_before_anything_starts() -> None:
    """A settings error (drain window above the deregistration delay) raises before any process exists."""
    with pytest.raises(SettingsError, match="drain_window_s"):
        TwinCluster(E2E_SETTINGS.with_overrides({"drain_window_s": 10}), servers=1)


@pytest.mark.haproxy
def test_add_kill_and_stop_by_pid() -> None:
    """add() registers a fresh slot once healthy, kill() is detected by the checks, stop() ends every PID."""
    require_binaries()
    twin = TwinCluster(E2E_SETTINGS, servers=1, time_scale=TIME_SCALE, capacity=3).start()
    try:
        assert [(s.name, s.phase, s.target) for s in twin.status()] == [("s1", "serving", "healthy")]
        assert twin.config_path.read_text().count(" disabled") == 2  # s2 and s3 wait in maintenance
        added = twin.add()
        assert added.name == "s2"
        assert {n: s.status for n, s in twin.targets().items()} == {"s1": "healthy", "s2": "healthy"}
        twin.kill("s1")
        inter = haproxy_config.health_check_interval_s(E2E_SETTINGS, TIME_SCALE)
        detect_s = twin.wait_target("s1", healthy=False)
        assert detect_s <= inter * (E2E_SETTINGS["unhealthy_threshold_count"] + 2)
        assert [(s.name, s.phase, s.target) for s in twin.status()] == [
            ("s1", "killed", "unhealthy"),
            ("s2", "serving", "healthy"),
        ]
        with pytest.raises(TwinError, match="s1 is not running"):
            twin.deregister("s1")
        twin.add()
        with pytest.raises(TwinError, match="all 3 server slots were used"):
            twin.add()
        pids = twin.pids()
        assert len(pids) == 4  # haproxy, redis, s2, s3
    finally:
        twin.stop()
    assert all(_gone(pid) for pid in pids)
    assert twin.pids() == []
    assert not twin.dir.exists()
