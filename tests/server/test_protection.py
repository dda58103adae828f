"""Scale-in protection policy: who is protected, when it is renewed, and how it is released (fake clock)."""

from __future__ import annotations

import json

from stickyws.server.protection import (
    CONFIRM_BEATS,
    Action,
    FleetEntry,
    ProtectionPolicy,
    read_fleet,
    unprotected_share,
)


class Clock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _policy(clock: Clock, server_id: str = "s1", expires_min: int = 10, percent: int = 25) -> ProtectionPolicy:
    return ProtectionPolicy(server_id=server_id, expires_min=expires_min, unprotected_percent=percent, clock=clock)


def _fleet(**connections: int) -> dict[str, FleetEntry]:
    return {sid: FleetEntry(n) for sid, n in connections.items()}


def _protect(policy: ProtectionPolicy, own: int, fleet: dict[str, FleetEntry]) -> None:
    """Run beats until the policy asks to protect, and record the agent's yes."""
    for _ in range(CONFIRM_BEATS):
        decision = policy.decide(own, fleet)
    assert decision.action is Action.PROTECT
    policy.record(decision, ok=True)


def test_unprotected_share_is_the_fewest_connections_rounded_down_and_at_least_one() -> None:
    """25 % of 3 servers leaves one, of 8 leaves two, of 1 leaves that one; ties go by server id."""
    assert unprotected_share({"s1": 12, "s2": 6, "s3": 2}, 25) == {"s3"}
    assert unprotected_share({f"s{i}": i for i in range(8)}, 25) == {"s0", "s1"}
    assert unprotected_share({"only": 40}, 25) == {"only"}
    assert unprotected_share({"b": 3, "a": 3, "c": 9}, 25) == {"a"}
    assert unprotected_share({}, 25) == frozenset()


def test_a_busy_server_protects_after_two_agreeing_beats_with_the_configured_expiry() -> None:
    """The busiest of three asks nothing on its first beat and PROTECT with ExpiresInMinutes on its second."""
    clock = Clock()
    policy = _policy(clock, expires_min=10)
    fleet = _fleet(s1=12, s2=6, s3=2)
    assert policy.decide(12, fleet).action is Action.NONE
    decision = policy.decide(12, fleet)
    assert (decision.action, decision.expires_in_min) == (Action.PROTECT, 10)


def test_the_server_with_the_fewest_connections_is_never_protected() -> None:
    """The server in the fewest-connection share asks for nothing, beat after beat."""
    policy = _policy(Clock(), server_id="s3")
    fleet = _fleet(s1=12, s2=6, s3=2)
    assert [policy.decide(2, fleet).action for _ in range(5)] == [Action.NONE] * 5
    assert policy.protected is False


def test_protection_is_renewed_at_half_of_its_period_and_not_before() -> None:
    """With 10 min of protection, nothing is asked at 299 s and a renewal for 10 min at 300 s."""
    clock = Clock()
    policy = _policy(clock, expires_min=10)
    fleet = _fleet(s1=12, s2=6, s3=2)
    _protect(policy, 12, fleet)
    clock.now += 299
    assert policy.decide(12, fleet).action is Action.NONE
    clock.now += 1
    decision = policy.decide(12, fleet)
    assert (decision.action, decision.expires_in_min) == (Action.PROTECT, 10)
    assert decision.reason.startswith("renewal")


def test_a_protected_server_that_becomes_the_least_busy_releases_after_two_beats() -> None:
    """Once s1 holds the fewest connections it keeps protection for one beat and releases on the next."""
    policy = _policy(Clock())
    _protect(policy, 12, _fleet(s1=12, s2=6, s3=2))
    now_least = _fleet(s1=1, s2=6, s3=2)
    assert policy.decide(1, now_least).action is Action.NONE
    decision = policy.decide(1, now_least)
    assert decision.action is Action.RELEASE
    policy.record(decision, ok=True)
    assert policy.protected is False


def test_one_beat_of_crossed_counts_makes_no_call() -> None:
    """A verdict that flips for a single beat and flips back asks the agent nothing."""
    policy = _policy(Clock())
    busy, least = _fleet(s1=12, s2=6, s3=2), _fleet(s1=1, s2=6, s3=2)
    _protect(policy, 12, busy)
    actions = [policy.decide(1, least).action, policy.decide(12, busy).action, policy.decide(1, least).action]
    assert actions == [Action.NONE, Action.NONE, Action.NONE]


def test_draining_releases_at_once_and_never_protects_again() -> None:
    """A drain releases on the same beat, and later beats ask for nothing even when busy."""
    policy = _policy(Clock())
    fleet = _fleet(s1=12, s2=6, s3=2)
    _protect(policy, 12, fleet)
    decision = policy.decide(12, fleet, draining=True)
    assert decision.action is Action.RELEASE
    policy.record(decision, ok=True)
    assert [policy.decide(12, fleet).action for _ in range(3)] == [Action.NONE] * 3


def test_a_failed_release_is_asked_again_at_shutdown() -> None:
    """A release the agent refused leaves the server protected, so shutdown asks to release again."""
    policy = _policy(Clock())
    _protect(policy, 12, _fleet(s1=12, s2=6, s3=2))
    policy.record(policy.decide(12, None, draining=True), ok=False)
    assert policy.protected is True
    assert policy.shutdown().action is Action.RELEASE


def test_an_unreadable_fleet_renews_nothing_so_protection_lapses() -> None:
    """With the registry unreadable, a protected server asks for no renewal even past half its period."""
    clock = Clock()
    policy = _policy(clock, expires_min=10)
    _protect(policy, 12, _fleet(s1=12, s2=6, s3=2))
    clock.now += 599
    assert policy.decide(12, None).action is Action.NONE


def test_an_empty_server_is_not_protected() -> None:
    """A server with no connection asks for nothing, even when every other server is empty too."""
    policy = _policy(Clock())
    fleet = _fleet(s1=0, s2=0, s3=0)
    assert [policy.decide(0, fleet).action for _ in range(3)] == [Action.NONE] * 3


def test_a_live_server_of_another_revision_releases_protection() -> None:
    """When a server of a new revision is live, a protected busy server of the old one releases."""
    policy = _policy(Clock())
    _protect(policy, 12, {"s1": FleetEntry(12, "app:1"), "s2": FleetEntry(6, "app:1"), "s3": FleetEntry(2, "app:1")})
    deploying = {"s1": FleetEntry(12, "app:1"), "s2": FleetEntry(6, "app:1"), "s4": FleetEntry(0, "app:2")}
    actions = [policy.decide(12, deploying).action for _ in range(CONFIRM_BEATS)]
    assert actions[-1] is Action.RELEASE


def test_read_fleet_keeps_live_serving_servers_only() -> None:
    """Draining, stopped and unreadable heartbeats are left out; the revision is read when present."""

    def beat(status: str, connections: object, **extra: str) -> str:
        return json.dumps({"serverId": "x", "connections": connections, "status": status, "ts": 1, **extra})

    fleet = read_fleet(
        {
            "s1": beat("serving", 12, revision="app:3"),
            "s2": beat("draining", 6),
            "s3": beat("stopped", 0),
            "s4": "not json",
            "s5": beat("serving", "many"),
            "s6": beat("serving", 2),
        }
    )
    assert fleet == {"s1": FleetEntry(12, "app:3"), "s6": FleetEntry(2, "")}


def test_the_renewal_rule_holds_only_with_protection_on() -> None:
    """An expiry of 1 min with 30 s heartbeats is an error with protection on and nothing with it off."""
    from stickyws.settings import Settings

    short = {"scale_in_protection_expires_min": 1, "heartbeat_interval_s": 30}
    on = Settings().with_overrides(short).validate()
    off = Settings().with_overrides({**short, "scale_in_protection": False}).validate()
    assert [f.rule for f in on if f.rule == "scale-in-protection-renewal"] == ["scale-in-protection-renewal"]
    assert [f.rule for f in off if f.rule == "scale-in-protection-renewal"] == []
