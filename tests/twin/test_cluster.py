"""TwinCluster: settings are checked first, servers come and go through HAProxy, stop() leaves nothing."""

from __future__ import annotations

import socket

import pytest

from stickyws.localproc import pid_alive
from stickyws.settings import SettingsError
from stickyws.twin import haproxy_config
from stickyws.twin.cluster import TwinCluster, TwinError, expand, literal, server_command
from tests.e2e.support import E2E_SETTINGS, TIME_SCALE, require_binaries


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
        config = twin.config_path.read_text()
        production, _, alternate = config.partition(f"\nbackend {haproxy_config.ALTERNATE_BACKEND}\n")
        assert production.count(" disabled") == 2  # s2 and s3 wait in maintenance
        assert alternate.count(" disabled") == 3  # the alternate backend holds no server until a deployment
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
    assert all(not pid_alive(pid) for pid in pids)
    assert twin.pids() == []
    assert not twin.dir.exists()


def test_server_command_placeholders_are_filled_and_typos_refused_before_anything_starts() -> None:
    """{port} {server_id} {redis_url} {jwt_secret} are filled, {{ }} are braces, an unknown {word} is refused."""
    values = {"port": "4000", "server_id": "s2", "redis_url": "redis://127.0.0.1:1/0", "jwt_secret": "k"}
    assert [expand(a, values) for a in server_command("node server.js --port {port} --id {server_id}")] == [
        "node",
        "server.js",
        "--port",
        "4000",
        "--id",
        "s2",
    ]
    assert expand("ws:user:{{id}} {redis_url} {}", values) == "ws:user:{id} redis://127.0.0.1:1/0 {}"
    assert expand(literal("ws:{u:{id}}:route {port}"), values) == "ws:{u:{id}}:route {port}"
    with pytest.raises(TwinError, match=r"unknown placeholder \{prot\}.*use \{port\}, \{server_id\}"):
        TwinCluster(E2E_SETTINGS, servers=1, server_cmd="node server.js --port {prot}")
    with pytest.raises(TwinError, match="the server command is empty"):
        TwinCluster(E2E_SETTINGS, servers=1, server_cmd="  ")
    with pytest.raises(TwinError, match=r"unknown placeholder \{secret\}"):
        TwinCluster(E2E_SETTINGS, servers=1, server_cmd="node s.js", server_env={"S": "{secret}"})


def test_allow_rules_runs_settings_the_alb_must_not_only_for_the_named_rule() -> None:
    """stickiness_enabled=false is refused unless allow_rules names 'stickiness'; other errors still are."""
    off = E2E_SETTINGS.with_overrides({"stickiness_enabled": False})
    with pytest.raises(SettingsError, match=r"\[stickiness\]"):
        TwinCluster(off, servers=1)
    lines: list[str] = []
    TwinCluster(off, servers=1, allow_rules=("stickiness",), log=lines.append).stop()  # never started: stop cleans up
    assert lines == [
        "twin: running despite [stickiness] stickiness_enabled=false: reconnects land on any task "
        "-> set stickiness_enabled=true"
    ]
    with pytest.raises(SettingsError, match="drain_window_s"):
        TwinCluster(off.with_overrides({"drain_window_s": 10}), servers=1, allow_rules=("stickiness",))


@pytest.mark.haproxy
def test_a_frontend_port_taken_before_haproxy_binds_it_is_replaced() -> None:
    """When another program holds the chosen frontend port, the twin starts HAProxy on another one."""
    require_binaries()
    twin = TwinCluster(E2E_SETTINGS, servers=1, time_scale=TIME_SCALE, capacity=1)
    chosen = twin.frontend_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", chosen))
        squatter.listen()
        with twin:
            assert twin.frontend_port != chosen
            assert twin.serving() == ["s1"]
            pids = twin.pids()
    assert all(not pid_alive(pid) for pid in pids)


@pytest.mark.haproxy
def test_a_server_port_taken_before_the_server_binds_it_is_replaced() -> None:
    """When another program takes a server's chosen port first, the twin starts that server on another port."""
    require_binaries()
    twin = TwinCluster(E2E_SETTINGS, servers=1, time_scale=TIME_SCALE, capacity=1)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        choose = twin._free_port
        ports = iter([taken])
        twin._free_port = lambda: next(ports, None) or choose()  # type: ignore[method-assign]
        with twin:
            assert twin.serving() == ["s1"]
            assert twin.procs["s1"].port != taken
            assert "address already in use" in (twin.dir / "server-s1.log").read_text().lower()
            pids = twin.pids()
    assert all(not pid_alive(pid) for pid in pids)
