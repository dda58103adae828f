"""The settings model travels unchanged through the environment, context and files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stickyws.settings import (
    FIELDS,
    Settings,
    SettingsError,
    SettingValueError,
    UnknownSettingError,
    env_name,
    from_env,
    resolve,
    to_env,
)

CUSTOM = Settings().with_overrides(
    {
        "idle_timeout_s": 300,
        "ping_interval_s": 25.5,
        "allowed_origins": "https://a.example,https://b.example",
        "permessage_deflate": True,
        "stickiness_type": "app_cookie",
        "app_cookie_name": "SESSION",
    }
)


def test_every_setting_round_trips_through_the_environment() -> None:
    """from_env(to_env(s)) == s for a settings object that differs from the defaults."""
    env = to_env(CUSTOM)
    assert len(env) == len(FIELDS)
    assert env["STICKYWS_IDLE_TIMEOUT_S"] == "300"
    assert env["STICKYWS_ALLOWED_ORIGINS"] == "https://a.example,https://b.example"
    assert from_env(env) == CUSTOM


def test_pings_off_round_trips() -> None:
    """A disabled (None) ping interval is rendered as 'off' and read back as None."""
    s = Settings().with_overrides({"ping_interval_s": None})
    assert to_env(s)[env_name("ping_interval_s")] == "off"
    assert from_env(to_env(s)).server.ping_interval_s is None


def test_context_strings_are_parsed_by_type() -> None:
    """CDK context values arrive as strings and are parsed by the field's type."""
    s = resolve({"idle_timeout_s": "300", "http2_enabled": "false", "drain_window_s": "12.5", "other": "x"})
    assert (s["idle_timeout_s"], s["http2_enabled"], s["drain_window_s"]) == (300, False, 12.5)


def test_unknown_name_suggests_the_close_one() -> None:
    """A typo names the setting it probably meant."""
    with pytest.raises(UnknownSettingError, match="did you mean idle_timeout_s"):
        Settings().with_overrides({"idle_timeout": 300})


def test_unparsable_value_names_the_expected_type() -> None:
    """A value of the wrong type is an error that names the setting and its range."""
    with pytest.raises(SettingValueError, match=r"idle_timeout_s='soon' is not a whole number \(1-4000 s\)"):
        Settings().with_overrides({"idle_timeout_s": "soon"})


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_settings_file_then_context(tmp_path: Path, suffix: str) -> None:
    """A settings file applies first and flat context names override it."""
    path = tmp_path / f"settings{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"idle_timeout_s": 200, "deregistration_delay_s": 90}))
    else:
        path.write_text("idle_timeout_s = 200\nderegistration_delay_s = 90\n")
    s = resolve({"settings_file": str(path), "idle_timeout_s": "400"})
    assert (s["idle_timeout_s"], s["deregistration_delay_s"]) == (400, 90)


def test_settings_file_with_unknown_name_fails(tmp_path: Path) -> None:
    """A settings file is strict: an unknown name is an error, not silently ignored."""
    path = tmp_path / "s.json"
    path.write_text('{"idle_timeout": 200}')
    with pytest.raises(UnknownSettingError):
        resolve({"settings_file": str(path)})


def test_unreadable_settings_file_names_the_file(tmp_path: Path) -> None:
    """A missing settings file is a settings error that names the path."""
    with pytest.raises(SettingsError, match="cannot read settings file"):
        resolve({"settings_file": str(tmp_path / "nope.json")})


def test_check_raises_with_every_error() -> None:
    """check() raises one SettingsError that lists every error with its fix."""
    bad = Settings().with_overrides({"http2_enabled": True, "idle_timeout_s": 0})
    with pytest.raises(SettingsError) as info:
        bad.check()
    text = str(info.value)
    assert "[http2-off]" in text
    assert "[in-range] idle_timeout_s=0 is outside the AWS range 1-4000 s" in text
