"""Local (Docker-free) bundling of the drain-notifier and migration-hook Lambdas.

``cdk synth`` must stay offline and must not need a Docker engine, so the Lambda's code is
assembled by copying files from the current Python environment, wherever the packages come from
(an installed wheel, or a checkout on ``sys.path``); nothing is read relative to a repository:

* the source files of the modules ``stickyws``, ``stickyws.compiled`` (which the package imports
  first; in the bundle it finds no compiled build), ``stickyws.keys``, ``stickyws.registry_auth`` and
  ``stickyws.drain_notifier`` (the handler, its registry credentials and the key schema it imports;
  NOT the rest of the package, never aiohttp), found with ``importlib.util.find_spec`` and copied
  as ``stickyws/__init__.py``, ``stickyws/compiled.py``, ``stickyws/keys.py``,
  ``stickyws/registry_auth.py`` and ``stickyws/drain_notifier.py``, and
* the installed ``redis`` package directory (redis-py is pure Python, so the copy made from this
  environment runs on the Lambda runtime; ``__pycache__`` is left out).

The migration hook's bundle is the same plus ``stickyws.migration`` and ``stickyws.migration_hook``
(:data:`MIGRATION_HOOK_MODULES`), the modules its docstring names; it too imports nothing else of stickyws.

CDK's :class:`aws_cdk.BundlingOptions` still requires a Docker ``image``; it is the runtime's SAM
build image (``public.ecr.aws/sam/build-python3.13``) and is never pulled because
:meth:`CopyLocalBundling.try_bundle` always succeeds or raises. The asset hash is computed from the
bundle's output, so it changes exactly when a bundled file does.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_

#: Runtime of the drain-notifier function; its SAM build image is the (never pulled) bundling image.
LAMBDA_RUNTIME: Final = lambda_.Runtime.PYTHON_3_13
#: Modules whose source files are copied, each to its package-relative path (:func:`bundle_path`).
HANDLER_MODULES: Final = (
    "stickyws",
    "stickyws.compiled",
    "stickyws.keys",
    "stickyws.registry_auth",
    "stickyws.drain_notifier",
)
#: Where those modules land in the bundle.
HANDLER_FILES: Final = (
    "stickyws/__init__.py",
    "stickyws/compiled.py",
    "stickyws/keys.py",
    "stickyws/registry_auth.py",
    "stickyws/drain_notifier.py",
)
#: Installed packages copied whole from the current environment.
HANDLER_PACKAGES: Final = ("redis",)
#: ``handler`` setting of the function.
HANDLER: Final = "stickyws.drain_notifier.handler"
#: Modules of the migration-hook function's bundle: the drain notifier's (whose notice it writes), its plan and itself.
MIGRATION_HOOK_MODULES: Final = (*HANDLER_MODULES, "stickyws.migration", "stickyws.migration_hook")
#: Where those modules land in the bundle.
MIGRATION_HOOK_FILES: Final = (*HANDLER_FILES, "stickyws/migration.py", "stickyws/migration_hook.py")
#: ``handler`` setting of the migration-hook function.
MIGRATION_HOOK_HANDLER: Final = "stickyws.migration_hook.handler"

_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


class BundlingError(RuntimeError):
    """The Lambda bundle could not be assembled; the message says what to install."""


def package_dir(name: str) -> Path:
    """Directory of the installed top-level package ``name`` (found with ``importlib.util.find_spec``)."""
    spec = importlib.util.find_spec(name)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise BundlingError(
            f"package {name!r} is not installed in this Python environment; the drain-notifier and "
            "migration-hook Lambdas bundle it from here: install stickyws with the CDK extra "
            "(pip install 'stickyws[cdk]')"
        )
    return Path(locations[0])


def module_file(name: str) -> Path:
    """Source file of the module ``name`` in the current environment (not imported, only located)."""
    spec = importlib.util.find_spec(name)
    origin = spec.origin if spec is not None else None
    if origin is None or not origin.endswith(".py") or not Path(origin).is_file():
        raise BundlingError(
            f"module {name!r} has no Python source file in this environment; the drain-notifier and "
            "migration-hook Lambdas bundle it from here: install stickyws with the CDK extra "
            "(pip install 'stickyws[cdk]')"
        )
    return Path(origin)


def bundle_path(name: str) -> str:
    """Path of module ``name`` inside the bundle: ``stickyws`` -> ``stickyws/__init__.py``."""
    parts = name.split(".")
    spec = importlib.util.find_spec(name)
    is_package = spec is not None and spec.submodule_search_locations is not None
    return "/".join(parts) + ("/__init__.py" if is_package else ".py")


@jsii.implements(ILocalBundling)
class CopyLocalBundling:
    """Assemble a Python Lambda bundle by copying files and installed packages; no Docker, no network.

    :param modules: module names whose source files are copied to their :func:`bundle_path`.
    :param packages: top-level package names copied whole from the current environment.
    """

    def __init__(
        self,
        *,
        modules: Sequence[str] = HANDLER_MODULES,
        packages: Sequence[str] = HANDLER_PACKAGES,
    ) -> None:
        self._modules = tuple(modules)
        self._packages = tuple(packages)

    def try_bundle(self, output_dir: str, *_options: Any, **_keywords: Any) -> bool:
        """Copy everything into ``output_dir`` and return ``True``; raise :class:`BundlingError` if a part is missing.

        Never returns ``False``: that would make the CDK fall back to Docker, which synth must not need.
        The bundling options (jsii passes them positionally, as one struct) are not needed.
        """
        out = Path(output_dir)
        for name in self._modules:
            src = module_file(name)
            dest = out / bundle_path(name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        for name in self._packages:
            shutil.copytree(package_dir(name), out / name, ignore=_IGNORED, dirs_exist_ok=True)
        return True


def drain_notifier_code() -> lambda_.Code:
    """The drain-notifier function's code: the local bundle described in this module's docstring."""
    return _bundle(HANDLER_MODULES)


def migration_hook_code() -> lambda_.Code:
    """The migration-hook function's code: the drain notifier's bundle plus :data:`MIGRATION_HOOK_MODULES`' two."""
    return _bundle(MIGRATION_HOOK_MODULES)


def _bundle(modules: Sequence[str]) -> lambda_.Code:
    return lambda_.Code.from_asset(
        str(package_dir("stickyws")),
        asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(image=LAMBDA_RUNTIME.bundling_image, local=CopyLocalBundling(modules=modules)),
    )
