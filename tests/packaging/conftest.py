"""Fixtures of the packaging tests: the wheel built once per session, and fresh venvs outside the checkout.

The user projects (``user_project/``, ``own_server_project/``) run in those venvs, never in this suite.
The modules that use these fixtures share one xdist group, so ``make test``'s two workers build them once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging.venvs import REPO_ROOT, Venv, bare_venv, build_wheel, linked_venv, lower_bounds, resolved_venv

collect_ignore = ["user_project", "own_server_project"]

#: The dependencies whose oldest supported version the ``oldest`` venv installs: the lower bound
#: each has in the wheel's ``[cdk]`` or ``[testing]`` extra.
OLDEST = {"cdk": ("aws-cdk-lib", "constructs", "cdk-nag"), "testing": ("pytest",)}


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stickyws wheel, built once from a copy of the sources outside the checkout."""
    root = tmp_path_factory.mktemp("wheel")
    assert not root.resolve().is_relative_to(REPO_ROOT)
    return build_wheel(root)


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv with the wheel and this suite's third-party packages (linked, not downloaded)."""
    return linked_venv(tmp_path_factory.mktemp("installed-wheel"), wheel)


@pytest.fixture(scope="session")
def core_only(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The same wheel in a second fresh venv with no third-party package at all (no extra installed)."""
    return bare_venv(tmp_path_factory.mktemp("core-only"), wheel)


@pytest.fixture(scope="session")
def oldest_pins(wheel: Path) -> dict[str, str]:
    """``{name: version}``: the lower bounds of :data:`OLDEST` in the wheel's metadata."""
    pins: dict[str, str] = {}
    for extra, names in OLDEST.items():
        pins.update(lower_bounds(wheel, extra, names))
    return pins


@pytest.fixture(scope="session")
def oldest(wheel: Path, oldest_pins: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv where pip resolves ``stickyws[cdk,testing]`` from the package index with every
    :data:`OLDEST` dependency pinned to its lower bound (aws-cdk-lib's floor, pytest 8)."""
    pins = [f"{name}=={version}" for name, version in oldest_pins.items()]
    return resolved_venv(tmp_path_factory.mktemp("oldest-supported"), wheel, "cdk,testing", pins)
