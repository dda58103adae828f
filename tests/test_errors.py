"""Every error stickyws defines derives from StickywsError through its package's base, keeping its built-in base."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import stickyws
from stickyws import errors
from stickyws.errors import StickywsError

#: Modules whose errors do not derive from the root: the Lambdas' modules, whose bundles carry only what
#: they need.
LAMBDA_MODULES = ("stickyws.drain_notifier", "stickyws.registry_auth", "stickyws.migration_hook")

#: Each error, the package base it derives from, and the built-in base its callers may catch.
HIERARCHY: dict[str, tuple[type[BaseException], type[BaseException]]] = {
    "stickyws.settings.errors.SettingsError": (StickywsError, ValueError),
    "stickyws.settings.errors.UnknownSettingError": (StickywsError, ValueError),
    "stickyws.settings.errors.SettingValueError": (StickywsError, ValueError),
    "stickyws.audit.from_aws.ReadError": (errors.AuditError, Exception),
    "stickyws.audit.from_template.TemplateError": (errors.AuditError, Exception),
    "stickyws.client.connection.ClientStopped": (errors.ReferenceClientError, RuntimeError),
    "stickyws.twin.processes.TwinError": (errors.LocalTwinError, RuntimeError),
    "stickyws.twin.runtime_api.RuntimeApiError": (errors.LocalTwinError, RuntimeError),
    "stickyws.testing.moto_compat.UnresolvableError": (errors.StackTestingError, ValueError),
    "stickyws.testing.readiness.NotWebSocketReady": (errors.StackTestingError, AssertionError),
    "stickyws.publish.PublishError": (StickywsError, ValueError),
    "stickyws.cli_errors.CommandError": (StickywsError, Exception),
    "stickyws.protocol.ProtocolError": (StickywsError, ValueError),
    "stickyws.localproc.LocalProcessError": (StickywsError, RuntimeError),
    "stickyws.server.auth.AuthError": (errors.ReferenceServerError, Exception),
    "stickyws.server.ws_frames.FrameError": (errors.ReferenceServerError, Exception),
    "stickyws.server.handler.HandlerError": (errors.ReferenceServerError, Exception),
    "stickyws.registry.errors.RegistryUnavailable": (errors.RegistryError, Exception),
    "stickyws.registry.errors.LaneUnavailable": (errors.RegistryError, ConnectionError),
}


def _defined_errors() -> dict[str, type[BaseException]]:
    """``module.Name`` -> class, for every exception class defined in a stickyws module (``__main__`` aside)."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(stickyws.__path__, "stickyws."):
        if info.name == "stickyws.__main__" or info.name.startswith(LAMBDA_MODULES):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                found[f"{info.name}.{name}"] = obj
    return found


def test_every_error_stickyws_defines_derives_from_the_root() -> None:
    """Walking every stickyws module (the server's and the Lambda's aside) finds only StickywsError subclasses."""
    found = _defined_errors()
    assert set(HIERARCHY) <= set(found)
    assert sorted(name for name, cls in found.items() if not issubclass(cls, StickywsError)) == []


def test_the_errors_module_draws_every_error_it_covers() -> None:
    """The hierarchy in stickyws.errors' docstring names every error the walk finds."""
    drawn = errors.__doc__ or ""
    missing = [name for name, cls in _defined_errors().items() if not re.search(rf"\b{cls.__name__}\b", drawn)]
    assert missing == []


@pytest.mark.parametrize("qualified", sorted(HIERARCHY))
def test_each_error_keeps_its_builtin_base_under_its_package_base(qualified: str) -> None:
    """An error derives from its package's base and still from the built-in base callers catch."""
    module, _, name = qualified.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    package_base, builtin = HIERARCHY[qualified]
    assert issubclass(cls, package_base)
    assert issubclass(cls, builtin)


def test_the_root_and_package_bases_are_plain_exceptions() -> None:
    """The bases add no built-in base of their own: only the concrete errors pick ValueError, RuntimeError, ..."""
    bases = [StickywsError, errors.AuditError, errors.ReferenceClientError, errors.LocalTwinError]
    bases.append(errors.StackTestingError)
    assert [cls.__bases__ for cls in bases] == [(Exception,), *[(StickywsError,)] * 4]


def test_a_settings_error_is_caught_by_except_value_error() -> None:
    """An unknown setting raises UnknownSettingError, which `except ValueError` and `except StickywsError` catch."""
    from stickyws.settings import Settings, UnknownSettingError

    with pytest.raises(ValueError, match="unknown setting 'no_such_setting_s'") as caught:
        Settings().with_overrides({"no_such_setting_s": 1})
    assert type(caught.value) is UnknownSettingError
    assert isinstance(caught.value, StickywsError)
