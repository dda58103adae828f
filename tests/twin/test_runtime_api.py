"""HAProxy runtime API answers are parsed exactly, and refusals raise with HAProxy's own words."""

from __future__ import annotations

import pytest

from stickyws.twin.runtime_api import (
    RuntimeApi,
    RuntimeApiError,
    check_answer,
    parse_current_sessions,
    parse_servers_state,
)

# Captured from HAProxy 2.6.12 (Debian) on this machine.
_HEADER = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
    "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
    "srv_check_addr srv_agent_addr srv_agent_port"
)
SERVERS_STATE = f"""1
{_HEADER}
3 ws_targets 1 s1 127.0.0.1 2 0 1 1 12 6 3 4 6 0 0 0 - 40001 - 0 0 - - 0
3 ws_targets 2 s2 127.0.0.1 0 0 1 1 3 6 2 0 6 0 0 0 - 40002 - 0 0 - - 0
3 ws_targets 3 s3 127.0.0.1 2 1 1 1 40 6 3 4 6 0 0 0 - 1 - 0 0 - - 0

"""
STAT = """# pxname,svname,qcur,qmax,scur,smax,slim,stot
ws_listener,FRONTEND,,,5,9,9985,40
ws_targets,s1,0,0,3,4,,20
ws_targets,s2,0,0,2,3,,20
ws_targets,s3,0,0,,0,,0
ws_targets,BACKEND,0,0,5,9,999,40
"""


def test_servers_state_is_parsed_into_alb_words() -> None:
    """UP -> healthy, DOWN -> unhealthy, forced maintenance -> unused (deregistered)."""
    states = parse_servers_state(SERVERS_STATE)
    assert [(s.name, s.port, s.status) for s in states] == [
        ("s1", 40001, "healthy"),
        ("s2", 40002, "unhealthy"),
        ("s3", 1, "unused"),
    ]
    assert [s.healthy for s in states] == [True, False, False]


def test_current_sessions_per_server() -> None:
    """`show stat` gives the open connections of each server of the backend (blank counts as 0)."""
    assert parse_current_sessions(STAT, "ws_targets") == {"s1": 3, "s2": 2, "s3": 0}


def test_refusals_and_garbage_raise() -> None:
    """HAProxy's refusal texts and unexpected answers raise RuntimeApiError quoting them."""
    with pytest.raises(RuntimeApiError, match="No such server"):
        check_answer("set server ws_targets/s9 state maint", "No such server.\n\n")
    with pytest.raises(RuntimeApiError, match="not accepted"):
        check_answer("add server be/x 1.2.3.4:5 cookie x", "'cookie' option is not accepted for dynamic server\n")
    assert check_answer("set server ws_targets/s1 state ready", "\n") == "\n"
    with pytest.raises(RuntimeApiError, match="unexpected"):
        parse_servers_state("Unknown command\n")
    with pytest.raises(ValueError, match="state must be one of"):
        RuntimeApi("/nonexistent").set_state("be", "s1", "up")


def test_unreachable_socket_says_what_to_check() -> None:
    """A missing socket raises RuntimeApiError asking whether the twin runs."""
    with pytest.raises(RuntimeApiError, match="is the twin running"):
        RuntimeApi("/nonexistent/haproxy.sock").command("show info")
