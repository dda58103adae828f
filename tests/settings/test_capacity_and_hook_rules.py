"""The LCU reservation rule and helper, and the migration hook's effect on the deployment rules."""

from __future__ import annotations

import pytest

from stickyws.settings import Settings, Severity, validate
from stickyws.settings.rules import CAPACITY_RESERVATION_LCU, NEW_CONNECTIONS_PER_LCU, capacity_reservation_for


def test_traffic_shifting_strategies_with_the_hook_do_not_warn() -> None:
    """With migration_hook on (the default) no strategy gets the deployment-moves-connections warning."""
    for strategy in ("rolling", "blue_green", "linear", "canary"):
        settings = Settings().with_overrides({"deployment_strategy": strategy})
        assert settings.deployment.migration_hook is True
        assert validate(settings, ["deployment-moves-connections"]) == []


def test_rolling_without_the_hook_does_not_warn() -> None:
    """migration_hook=false matters only for a traffic-shifting strategy."""
    assert validate(Settings().with_overrides({"migration_hook": False}), ["deployment-moves-connections"]) == []


def test_no_reservation_reports_nothing() -> None:
    """capacity_reservation_lcu=0 (the default) reserves nothing and the rule is silent."""
    assert validate(Settings(), ["capacity-reservation"]) == []


def test_reservation_below_the_migration_pace_warns_with_the_size_that_covers_it() -> None:
    """A reservation whose new connections/s fall below migration_pace_per_s warns and names the LCUs that cover it."""
    settings = Settings().with_overrides(
        {"deployment_strategy": "linear", "capacity_reservation_lcu": 100, "migration_pace_per_s": 5000}
    )
    findings = validate(settings, ["capacity-reservation"])
    assert [f.severity for f in findings] == [Severity.WARNING, Severity.INFO]
    assert findings[0].message == (
        "capacity_reservation_lcu=100 covers 2500 new connections/s, below migration_pace_per_s=5000: the "
        "migration's reconnects wait for the load balancer to scale"
    )
    assert findings[0].fix == "set capacity_reservation_lcu >= 200 or lower migration_pace_per_s"
    assert findings[1].settings == ("capacity_reservation_lcu",)


def test_reservation_that_covers_the_pace_only_informs() -> None:
    """A reservation at or above the pace gives the one info line with its new connections per second."""
    settings = Settings().with_overrides({"deployment_strategy": "canary", "capacity_reservation_lcu": 200})
    findings = validate(settings, ["capacity-reservation"])
    assert [f.severity for f in findings] == [Severity.INFO]
    assert "reserves 5000 new connections/s" in findings[0].message


@pytest.mark.parametrize(("lcu", "in_range"), [(15_000, True), (15_001, False)])
def test_reservation_above_the_quota_is_out_of_range(lcu: int, in_range: bool) -> None:
    """15,000 LCU (the per-load-balancer quota) is the setting's upper bound."""
    findings = validate(Settings().with_overrides({"capacity_reservation_lcu": lcu}), ["in-range"])
    assert ([f.message for f in findings if f.severity is Severity.ERROR] == []) is in_range


@pytest.mark.parametrize(("pace", "lcu"), [(200, 100), (2500, 100), (2501, 101), (10_000, 400)])
def test_capacity_reservation_for_sizes_by_new_connections(pace: float, lcu: int) -> None:
    """The helper reserves ceil(pace / 25) LCU, never below the AWS minimum of 100."""
    assert capacity_reservation_for(Settings().with_overrides({"migration_pace_per_s": pace})) == lcu
    assert (NEW_CONNECTIONS_PER_LCU, CAPACITY_RESERVATION_LCU) == (25, (100, 15_000))
