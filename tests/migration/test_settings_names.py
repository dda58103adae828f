"""The migration hook reads the settings model's variables, under the names the model renders."""

from __future__ import annotations

from stickyws import migration_hook
from stickyws.settings import Settings, env_name, to_env


def test_hook_variables_are_the_models() -> None:
    """Each variable the hook reads is the environment name of one setting of the model."""
    assert (
        env_name("migration_pace_per_s"),
        env_name("migration_window_s"),
        env_name("drain_window_s"),
        env_name("migration_done_connections"),
    ) == (
        migration_hook.PACE_ENV,
        migration_hook.WINDOW_ENV,
        migration_hook.DRAIN_WINDOW_ENV,
        migration_hook.DONE_ENV,
    )


def test_hook_reads_the_rendered_settings() -> None:
    """The model's own rendering of a deployment's settings configures the hook with the same values."""
    settings = Settings().with_overrides({"migration_pace_per_s": 50, "migration_window_s": 120, "drain_window_s": 20})
    config = migration_hook.config_from_env(to_env(settings))
    assert (config.pace_per_s, config.window_s, config.drain_window_s, config.done_connections) == (50, 120, 20, 0)
