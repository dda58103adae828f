"""Rules of the load balancer and its target group: HTTP/2, timeouts against the server's pings and drain,
health checks and stickiness.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from stickyws.settings.findings import Finding
from stickyws.settings.rules.engine import LB, SERVER, SERVICE, _error, _info, _warning, define_rule

if TYPE_CHECKING:
    from stickyws.settings.model import Settings


@define_rule("http2-off", "HTTP/2 is off on a load balancer that serves WebSockets.", LB)
def _http2_off(s: Settings) -> Iterator[Finding]:
    if s.load_balancer.http2_enabled:
        yield _error(
            "http2-off",
            "http2_enabled=true: clients that negotiate h2 cannot upgrade to WebSocket",
            "set http2_enabled=false (routing.http2.enabled=false)",
            "http2_enabled",
        )


@define_rule("ping-within-idle-timeout", "The server pings at most every half idle timeout.", LB, SERVER)
def _ping_within_idle(s: Settings) -> Iterator[Finding]:
    ping, idle = s.server.ping_interval_s, s.load_balancer.idle_timeout_s
    if ping is None:
        yield _warning(
            "ping-within-idle-timeout",
            f"server pings are off: idle connections are cut after idle_timeout_s={idle}",
            f"set ping_interval_s to at most {idle / 2:g}",
            "ping_interval_s",
            "idle_timeout_s",
        )
    elif ping > idle / 2:
        yield _error(
            "ping-within-idle-timeout",
            f"ping_interval_s={ping:g} > idle_timeout_s/2={idle / 2:g}: one missed ping costs the connection",
            f"set ping_interval_s <= {idle / 2:g} or idle_timeout_s >= {2 * ping:g}",
            "ping_interval_s",
            "idle_timeout_s",
        )


@define_rule("drain-within-deregistration-delay", "Clients are migrated before the ALB cuts them.", LB, SERVER)
def _drain_within_dereg(s: Settings) -> Iterator[Finding]:
    drain, dereg = s.server.drain_window_s, s.target_group.deregistration_delay_s
    if drain > dereg:
        yield _error(
            "drain-within-deregistration-delay",
            f"drain_window_s={drain:g} > deregistration_delay_s={dereg}: the ALB cuts clients "
            "that have not been told to reconnect yet",
            f"set drain_window_s <= {dereg} or deregistration_delay_s >= {drain:g}",
            "drain_window_s",
            "deregistration_delay_s",
        )


@define_rule("health-check-timing", "Health-check timeout is below the interval; time to healthy is known.", LB)
def _health_check(s: Settings) -> Iterator[Finding]:
    tg = s.target_group
    if tg.health_check_timeout_s >= tg.health_check_interval_s:
        yield _error(
            "health-check-timing",
            f"health_check_timeout_s={tg.health_check_timeout_s} >= "
            f"health_check_interval_s={tg.health_check_interval_s}",
            "make health_check_timeout_s smaller than health_check_interval_s",
            "health_check_timeout_s",
            "health_check_interval_s",
        )
    if not re.fullmatch(r"\d{3}(-\d{3})?(,\d{3}(-\d{3})?)*", tg.health_check_matcher) or any(
        not 200 <= int(code) <= 499 for code in re.findall(r"\d{3}", tg.health_check_matcher)
    ):
        yield _error(
            "health-check-timing",
            f"health_check_matcher={tg.health_check_matcher!r} is not codes or ranges within 200-499",
            "use e.g. 200 or 200-299",
            "health_check_matcher",
        )
    if not tg.health_check_path.startswith("/"):
        yield _error(
            "health-check-timing",
            f"health_check_path={tg.health_check_path!r} does not start with /",
            "use an absolute path such as /health",
            "health_check_path",
        )
    yield _info(
        "health-check-timing",
        f"a new task is healthy after about {tg.health_check_interval_s * tg.healthy_threshold_count} s "
        f"(interval x healthy threshold); a failed one is out after about "
        f"{tg.health_check_interval_s * tg.unhealthy_threshold_count} s",
        "health_check_interval_s",
        "healthy_threshold_count",
    )


@define_rule("stickiness", "Stickiness is on, of a valid type, and outlives the client's reconnect backoff.", LB)
def _stickiness(s: Settings) -> Iterator[Finding]:
    tg = s.target_group
    if not tg.stickiness_enabled:
        yield _error(
            "stickiness",
            "stickiness_enabled=false: reconnects land on any task",
            "set stickiness_enabled=true",
            "stickiness_enabled",
        )
    if tg.stickiness_type == "app_cookie":
        name = tg.app_cookie_name
        if not name:
            yield _error(
                "stickiness",
                "stickiness_type=app_cookie needs app_cookie_name",
                "set app_cookie_name to the cookie your application issues",
                "app_cookie_name",
            )
        elif name.startswith(("AWSALB", "AWSALBAPP", "AWSALBTG")):
            yield _error(
                "stickiness",
                f"app_cookie_name={name!r} uses a prefix the ALB reserves",
                "pick a name that does not start with AWSALB",
                "app_cookie_name",
            )
    if tg.stickiness_duration_s < s.client.reconnect_cap_s:
        yield _error(
            "stickiness",
            f"stickiness_duration_s={tg.stickiness_duration_s} < reconnect_cap_s={s.client.reconnect_cap_s:g}: "
            "a client backing off loses its task",
            f"set stickiness_duration_s >= {s.client.reconnect_cap_s:g}",
            "stickiness_duration_s",
            "reconnect_cap_s",
        )


#: New connections per second one ALB Load balancer Capacity Unit covers (AWS: Elastic Load Balancing pricing).
NEW_CONNECTIONS_PER_LCU = 25
#: AWS's bounds on an ALB's LCU reservation: aws-cdk-lib refuses fewer than 100 ("must be ... greater than or
#: equal to 100 for Application Load Balancer"); 15,000 reserved LCUs per load balancer is the default quota
#: (Quotas for your Application Load Balancers).
CAPACITY_RESERVATION_LCU = (100, 15_000)


def capacity_reservation_for(s: Settings) -> int:
    """The LCU reservation that covers ``migration_pace_per_s`` new connections per second, at least AWS's minimum.

    ``ceil(migration_pace_per_s / 25)``, raised to 100: what a deployment's reconnect wave asks of the load
    balancer at its own pace, on top of nothing else (add the steady traffic's LCUs to it).
    """
    needed = -(-s.deployment.migration_pace_per_s // NEW_CONNECTIONS_PER_LCU)
    return max(CAPACITY_RESERVATION_LCU[0], int(needed))


@define_rule(
    "capacity-reservation",
    "An LCU reservation is one AWS accepts and covers the migration's reconnect pace.",
    LB,
    SERVICE,
)
def _capacity_reservation(s: Settings) -> Iterator[Finding]:
    lcu = s.load_balancer.capacity_reservation_lcu
    lo, hi = CAPACITY_RESERVATION_LCU
    if lcu == 0:
        return
    if lcu < lo:
        yield _error(
            "capacity-reservation",
            f"capacity_reservation_lcu={lcu}: an Application Load Balancer reserves at least {lo} LCU",
            f"set capacity_reservation_lcu to 0 (no reservation) or {lo}-{hi}",
            "capacity_reservation_lcu",
        )
        return
    d = s.deployment
    covered = lcu * NEW_CONNECTIONS_PER_LCU
    if d.deployment_strategy != "rolling" and d.migration_hook and covered < d.migration_pace_per_s:
        yield _warning(
            "capacity-reservation",
            f"capacity_reservation_lcu={lcu} covers {covered} new connections/s, below migration_pace_per_s="
            f"{d.migration_pace_per_s:g}: the migration's reconnects wait for the load balancer to scale",
            f"set capacity_reservation_lcu >= {capacity_reservation_for(s)} or lower migration_pace_per_s",
            "capacity_reservation_lcu",
            "migration_pace_per_s",
        )
    yield _info(
        "capacity-reservation",
        f"capacity_reservation_lcu={lcu} reserves {covered} new connections/s as the load balancer's floor; AWS "
        "applies a reservation within minutes to hours, lowers it at most twice a day, and bills it while it stands",
        "capacity_reservation_lcu",
    )
