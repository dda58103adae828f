"""The twin's deploy command, hook default, probe counts and report: pure parts, no process started."""

from __future__ import annotations

from typing import Any

import pytest

from stickyws.twin import cli
from stickyws.twin.blue_green import PACED, DeployReport, RollbackReport, Stage, StepCount, resolve_hook
from stickyws.twin.migration import PacedHook
from stickyws.twin.probes import Deliveries, ProbeCount, deliveries


def report(**changes: Any) -> DeployReport:
    fields: dict[str, Any] = {
        "strategy": "blue_green",
        "blue": ("s1", "s2"),
        "green": ("s3", "s4"),
        "stages": (Stage("hook", 1.0, 4.0),),
        "steps": (StepCount(100.0, 0, 24),),
        "blue_connections_at_shift": 24,
        "blue_connections_at_cleanup": 0,
        "cut": 0,
        "moved": 24,
        "moved_more_than_once": 0,
        "blue_handshakes_after_shift": 0,
        "peak_handshakes_per_s": 10.4,
        "exit_codes": (0, 0),
        "hooked": True,
        "hook_calls": 3,
    }
    return DeployReport(**{**fields, **changes})


def test_deliveries_count_what_never_arrived_and_every_arrival_beyond_the_first() -> None:
    """Lost: numbers sent and never received; doubled: each repeat of a received number."""
    assert deliveries([0, 1, 2, 3], [0, 1, 2, 3]) == Deliveries(4, 0, 0)
    assert deliveries([0, 1, 2, 3], [0, 2, 2, 3, 3, 3]) == Deliveries(4, 1, 3)
    assert deliveries([], []) == Deliveries(0, 0, 0)


def test_without_probe_clients_the_report_says_lost_and_doubled_were_not_measured() -> None:
    """No probes: ``lost`` and ``doubled`` are None and the report says "not measured", never 0."""
    plain = report()
    assert (plain.lost, plain.doubled) == (None, None)
    text = plain.render()
    assert "lost not measured, doubled not measured" in text
    assert "(migration hook, 3 calls)" in text
    assert "24 moved (0 more than once), 0 cut" in text
    assert "peak 10 handshakes/s" in text


def test_with_probe_clients_the_report_carries_their_counts() -> None:
    """Probe counts fill ``lost`` and ``doubled`` (messages, pushes and publications summed)."""
    probes = ProbeCount(
        clients=2,
        messages=Deliveries(20, 1, 0),
        pushes=Deliveries(30, 0, 2),
        publications=Deliveries(10, 0, 0),
        servers=(("s1", "s3"), ("s2", "s4")),
        settled=False,
    )
    measured = report(probes=probes)
    assert (measured.lost, measured.doubled) == (1, 2)
    text = measured.render()
    assert "lost 1, doubled 2" in text
    assert "2 probe clients: 1 lost, 2 doubled (20 messages, 30 pushes, 10 publication deliveries)" in text
    assert "not everything had arrived" in text


def test_a_rollback_is_in_the_report() -> None:
    """The rollback's line names the replaced blue servers and what moved back."""
    rolled = RollbackReport(0.5, (("s1", "s5"), ("s2", "s6")), 24, 24, 0, 0, (0, 0, 0, 0))
    text = report(rollback=rolled).render()
    assert ", rolled back:" in text
    assert "drained blue servers replaced (s1 by s5, s2 by s6), 24 connections on green, 24 moved back" in text


def test_the_default_hook_is_a_new_migration_hook_and_none_is_none() -> None:
    """``PACED`` resolves to a fresh migration hook on the twin's settings; ``None`` stays None (the baseline)."""
    first, second = resolve_hook(PACED), resolve_hook(PACED)
    assert isinstance(first, PacedHook)
    assert isinstance(second, PacedHook)
    assert first is not second
    assert first.pace_per_s is None
    assert resolve_hook(None) is None


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ([], {}),
        (["--no-hook"], {"hook": None}),
        (["--rollback", "--probes", "5"], {"rollback": True, "probes": 5}),
        (["--probes"], "--probes takes a number of clients, e.g. --probes 20 (got 'nothing')"),
        (["--probes", "0"], "--probes takes a number of clients, e.g. --probes 20 (got '0')"),
        (["--fast"], "unknown option '--fast': use --no-hook, --rollback or --probes N"),
    ],
)
def test_deploy_options_map_to_deploy_arguments_or_say_what_is_wrong(words: list[str], expected: Any) -> None:
    """``deploy STRATEGY`` options become keyword arguments of TwinCluster.deploy, or one message."""
    assert cli.deploy_options(words) == expected


class FakeCluster:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def deploy(self, strategy: str, **options: Any) -> DeployReport:
        self.calls.append((strategy, options))
        return report(strategy=strategy)


def test_the_deploy_command_uses_the_default_hook_unless_told_otherwise() -> None:
    """``deploy canary`` passes no hook (the default: the migration hook); ``--no-hook`` passes None; a bad
    option runs nothing and prints the help."""
    cluster, lines = FakeCluster(), []
    cli.execute(cluster, ["deploy", "canary"], lines.append)
    cli.execute(cluster, ["deploy", "blue_green", "--no-hook", "--probes", "3"], lines.append)
    cli.execute(cluster, ["deploy", "linear", "--now"], lines.append)
    assert cluster.calls == [("canary", {}), ("blue_green", {"hook": None, "probes": 3})]
    assert lines[0].startswith("deploy canary: blue s1/s2 -> green s3/s4 (migration hook, 3 calls)")
    assert lines[2].startswith("deploy linear: unknown option '--now'")
