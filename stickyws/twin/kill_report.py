"""What a SIGKILL of one server (a crashed task) costs its sticky clients, in the twin and on AWS.

Between the crash and the moment the load balancer's health checks mark the target down, a client
whose stickiness cookie names the dead server is still sent to it: HAProxy answers 503 (the ALB
502; with ``retries 0`` neither retries on another target). After that, the request goes to
another server, which issues a new cookie. :meth:`stickyws.twin.cluster.TwinCluster.kill`
measures that window with real sticky requests and returns a :class:`KillReport`; the pure parts
(which cookie a sticky client carries, which server answered, the expected figures) are here.

Expected figures: HAProxy checks every ``inter`` and marks a server down after ``fall``
consecutive failures, so the window is between ``(fall - 1) x inter`` and ``fall x inter`` (a
refused connect fails a check at once). The ALB does the same with ``health_check_interval_s``
and ``unhealthy_threshold_count``; the twin's interval is the setting times its time scale.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stickyws.settings import Settings
from stickyws.twin import haproxy_config
from stickyws.twin.haproxy_config import APP_LB_COOKIE_NAME, LB_COOKIE_NAME, LB_CORS_COOKIE_NAME

#: Cookies whose value names the server that answered (the twin's are readable: see haproxy_config).
_SERVER_COOKIES = (LB_CORS_COOKIE_NAME, LB_COOKIE_NAME, APP_LB_COOKIE_NAME)


def sticky_cookie(settings: Settings, server: str) -> str | None:
    """The ``Cookie`` header of a client stuck to ``server``; ``None`` when stickiness is off."""
    if not settings["stickiness_enabled"]:
        return None
    name = APP_LB_COOKIE_NAME if settings["stickiness_type"] == "app_cookie" else LB_COOKIE_NAME
    return f"{name}={server}"


def served_by(set_cookies: Iterable[str]) -> str | None:
    """The server a response came from, read from the stickiness cookie it sets (``None``: none set).

    ``AWSALBCORS`` is set on every server response in ``lb_cookie`` mode, ``AWSALB`` when the
    client's cookie was missing or named another server (its value is ``<slot>|<dates>``), and
    ``AWSALBAPP-0`` in ``app_cookie`` mode.
    """
    for header in set_cookies:
        name, sep, rest = header.partition("=")
        if sep and name.strip() in _SERVER_COOKIES:
            value = rest.split(";", 1)[0].strip()
            return value.split("|", 1)[0] or None
    return None


def expected_outage_s(settings: Settings, time_scale: float) -> float:
    """How long the twin's checks take to mark a dead server down, at most: ``fall x inter`` (scaled)."""
    return haproxy_config.health_check_interval_s(settings, time_scale) * int(settings["unhealthy_threshold_count"])


def aws_outage_s(settings: Settings) -> float:
    """The same on AWS: ``health_check_interval_s x unhealthy_threshold_count`` (no time scale)."""
    return float(settings["health_check_interval_s"]) * int(settings["unhealthy_threshold_count"])


@dataclass(frozen=True)
class KillReport:
    """What a SIGKILL of ``name`` did to the clients stuck to it, measured through HAProxy.

    * ``refused_s``: from the SIGKILL until a request carrying ``name``'s stickiness cookie was
      answered by another server (``moved_to``); ``None`` when stickiness is off, or when no
      other server answered within the bound (none was left healthy);
    * ``refusals``: those requests refused before that (the twin sends one about every 10 ms):
      503, or 502 for one the crash itself broke;
    * ``marked_down_s``: from the SIGKILL until HAProxy's runtime API reported the server down
      (``None``: not within the bound);
    * ``expected_s``: ``unhealthy_threshold_count x`` the twin's scaled check interval, the
      most the checks should take; ``aws_s``: the figure it stands for on AWS, unscaled.
    """

    name: str
    sticky: bool
    refused_s: float | None
    refusals: int
    moved_to: str | None
    marked_down_s: float | None
    expected_s: float
    aws_s: float
    checks: int
    interval_s: float
    aws_interval_s: float

    def render(self) -> str:
        """One line: measured window, expected window, the AWS figure."""
        down = f"{self.marked_down_s:.2f} s" if self.marked_down_s is not None else "not within the bound"
        if not self.sticky:
            measured = f"HAProxy's checks marked it down after {down}; until then requests sent to it got 503"
        elif self.refused_s is None:
            measured = (
                f"its sticky clients were refused (503, {self.refusals} requests) and no other server took them "
                f"(marked down after {down})"
            )
        else:
            measured = (
                f"its sticky clients were refused (503) for {self.refused_s:.2f} s ({self.refusals} requests) until "
                f"HAProxy's "
                f"checks marked it down ({down}) and {self.moved_to} served them"
            )
        return (
            f"{self.name}: SIGKILL: {measured}; expected at most {self.expected_s:.2f} s "
            f"({self.checks} failed checks x {self.interval_s:g} s); on AWS about {self.aws_s:g} s "
            f"(unhealthy_threshold_count {self.checks} x health_check_interval_s {self.aws_interval_s:g} s)"
        )
