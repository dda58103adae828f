"""The reference server judges its settings at start-up for the platform it runs on."""

from __future__ import annotations

import pytest

from stickyws.server.app import KUBERNETES_ENV, StartupError, config_from_env
from stickyws.settings import ENV_JWT_SECRET, Settings, to_env

#: Valid on Kubernetes (no stop-timeout cap; the grace period holds preStop 15 + drain 45 + shutdown 60),
#: invalid on ECS (the task's stop timeout of 30 s would SIGKILL a 60 s shutdown).
LONG_SHUTDOWN = Settings().with_overrides({"shutdown_timeout_s": 60, "termination_grace_period_s": 150})


def _env(**extra: str) -> dict[str, str]:
    return {**to_env(LONG_SHUTDOWN), ENV_JWT_SECRET: "s" * 32, **extra}


def test_a_pod_is_judged_by_the_kubernetes_rules_and_starts() -> None:
    """In a pod (KUBERNETES_SERVICE_HOST set) a shutdown longer than ECS's stop timeout is accepted."""
    config = config_from_env(_env(**{KUBERNETES_ENV: "10.0.0.1"}))
    assert config.settings["shutdown_timeout_s"] == 60


def test_on_ecs_the_same_settings_are_refused_with_the_rule() -> None:
    """Outside a pod the ECS rules apply: the same settings stop the server with the stop-timeout rule."""
    with pytest.raises(StartupError, match="stop-timeout-covers-shutdown"):
        config_from_env(_env())


def test_a_pod_whose_grace_period_is_short_is_refused() -> None:
    """In a pod the Kubernetes rules apply: a grace period under preStop + drain + shutdown stops the server."""
    env = _env(**{KUBERNETES_ENV: "10.0.0.1"})
    env.update({k: v for k, v in to_env(Settings().with_overrides({"termination_grace_period_s": 30})).items()
                if k.endswith("TERMINATION_GRACE_PERIOD_S")})  # fmt: skip
    with pytest.raises(StartupError, match="k8s-grace-covers-drain"):
        config_from_env(env)
