"""The stickyws pytest plugin in a pytest run of its own: what a user sees before giving it a template."""

from __future__ import annotations

import pytest

#: Load the plugin explicitly (and nothing through entry points, so it is never registered twice).
PLUGIN_ARGS = ("-p", "stickyws.testing.plugin", "-p", "no:cacheprovider")


@pytest.fixture
def isolated(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose runs load no plugin through entry points."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def test_without_a_template_the_fixture_fails_saying_what_to_override(isolated: pytest.Pytester) -> None:
    """stickyws_moto without an overridden stickyws_template errors with one line naming the fixture, no traceback."""
    isolated.makepyfile(test_user="def test_deployed(stickyws_moto):\n    pass\n")
    result = isolated.runpytest_inprocess(*PLUGIN_ARGS)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*override the stickyws_template fixture in your conftest.py (scope module or session)*"]
    )
    assert "Traceback" not in result.stdout.str()
    assert "def stickyws_template" not in result.stdout.str()


def test_the_plugin_lists_its_fixtures(isolated: pytest.Pytester) -> None:
    """`pytest --fixtures` shows every stickyws fixture with the first line of its docstring."""
    result = isolated.runpytest_inprocess(*PLUGIN_ARGS, "--fixtures")
    assert result.ret == 0
    out = result.stdout.str()
    for name in ("stickyws_template", "stickyws_stack_name", "stickyws_aws_region", "stickyws_moto_session",
                 "stickyws_deploy", "stickyws_moto"):  # fmt: skip
        assert f"{name} [module scope] -- " in out, name
