"""The kill report's pure parts: the cookie a sticky client carries, who answered, the expected and AWS figures."""

from __future__ import annotations

from stickyws.settings import Settings
from stickyws.twin.kill_report import KillReport, aws_outage_s, expected_outage_s, served_by, sticky_cookie

CHECKS = Settings().with_overrides({"health_check_interval_s": 5, "unhealthy_threshold_count": 3})


def test_a_sticky_client_carries_the_cookie_of_its_stickiness_type() -> None:
    """lb_cookie clients carry AWSALB, app_cookie clients AWSALBAPP-0; with stickiness off there is none."""
    assert sticky_cookie(Settings(), "s2") == "AWSALB=s2"
    app = Settings().with_overrides({"stickiness_type": "app_cookie", "app_cookie_name": "SESSION"})
    assert sticky_cookie(app, "s2") == "AWSALBAPP-0=s2"
    assert sticky_cookie(Settings().with_overrides({"stickiness_enabled": False}), "s2") is None


def test_the_server_that_answered_is_read_from_the_stickiness_cookie_it_sets() -> None:
    """AWSALBCORS, AWSALB (without HAProxy's dates) and AWSALBAPP-0 name the server; other cookies do not."""
    assert served_by(["SESSION=abc; Path=/", "AWSALBCORS=s3; Max-Age=60; Path=/; SameSite=None; Secure"]) == "s3"
    assert served_by(["AWSALB=s2|Z2xvYg|Z2xvYg; Max-Age=60; path=/"]) == "s2"
    assert served_by(["AWSALBAPP-0=s4; Max-Age=600; Path=/"]) == "s4"
    assert served_by(["SESSION=s1; Path=/"]) is None
    assert served_by([]) is None


def test_expected_window_is_the_scaled_checks_and_the_aws_figure_is_unscaled() -> None:
    """unhealthy_threshold_count x interval: 3 x 0.25 s in a twin scaled by 0.05, 3 x 5 s on AWS."""
    assert expected_outage_s(CHECKS, 0.05) == 0.75
    assert aws_outage_s(CHECKS) == 15.0


def _report(**changes: object) -> KillReport:
    fields: dict[str, object] = {
        "name": "s1",
        "sticky": True,
        "refused_s": 0.62,
        "refusals": 31,
        "moved_to": "s2",
        "marked_down_s": 0.61,
        "expected_s": 0.75,
        "aws_s": 15.0,
        "checks": 3,
        "interval_s": 0.25,
        "aws_interval_s": 5.0,
    }
    fields.update(changes)
    return KillReport(**fields)  # type: ignore[arg-type]


def test_the_report_line_gives_measured_expected_and_aws_figures() -> None:
    """One line per case: clients moved, no server left to take them, stickiness off."""
    tail = (
        "expected at most 0.75 s (3 failed checks x 0.25 s); "
        "on AWS about 15 s (unhealthy_threshold_count 3 x health_check_interval_s 5 s)"
    )
    assert _report().render() == (
        "s1: SIGKILL: its sticky clients were refused (503) for 0.62 s (31 requests) until HAProxy's checks "
        f"marked it down (0.61 s) and s2 served them; {tail}"
    )
    assert _report(refused_s=None, moved_to=None).render() == (
        "s1: SIGKILL: its sticky clients were refused (503, 31 requests) and no other server took them "
        f"(marked down after 0.61 s); {tail}"
    )
    assert _report(sticky=False, refused_s=None, refusals=0, moved_to=None).render() == (
        f"s1: SIGKILL: HAProxy's checks marked it down after 0.61 s; until then requests sent to it got 503; {tail}"
    )
