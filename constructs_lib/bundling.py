"""Local (Docker-free) bundling of the drain-notifier Lambda.

``cdk synth`` must stay offline and must not need a Docker engine, so the Lambda's code is
assembled by copying files from this checkout and from the current Python environment:

* ``stickyws/__init__.py``, ``stickyws/keys.py``, ``stickyws/registry_auth.py`` and
  ``stickyws/drain_notifier.py`` (the handler, its registry credentials
  and the key schema it imports; NOT the rest of the package, never aiohttp), and
* the installed ``redis`` package directory (redis-py is pure Python, so the copy made from this
  environment runs on the Lambda runtime; ``__pycache__`` is left out).

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
#: Directory that holds the ``stickyws`` package (the repository root in a checkout).
SOURCE_ROOT: Final = Path(__file__).resolve().parent.parent
#: Files copied from :data:`SOURCE_ROOT`, relative paths, the same inside the bundle.
HANDLER_FILES: Final = (
    "stickyws/__init__.py",
    "stickyws/keys.py",
    "stickyws/registry_auth.py",
    "stickyws/drain_notifier.py",
)
#: Installed packages copied whole from the current environment.
HANDLER_PACKAGES: Final = ("redis",)
#: ``handler`` setting of the function.
HANDLER: Final = "stickyws.drain_notifier.handler"

_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


class BundlingError(RuntimeError):
    """The Lambda bundle could not be assembled; the message says what to install."""


def package_dir(name: str) -> Path:
    """Directory of the installed top-level package ``name`` (found with ``importlib.util.find_spec``)."""
    spec = importlib.util.find_spec(name)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise BundlingError(
            f"package {name!r} is not installed in this Python environment; the drain-notifier Lambda "
            "bundles it from here: install the CDK extra (pip install -e '.[cdk]', as `make setup` does)"
        )
    return Path(locations[0])


@jsii.implements(ILocalBundling)
class CopyLocalBundling:
    """Assemble a Python Lambda bundle by copying files and installed packages; no Docker, no network.

    :param files: paths relative to ``source_root``, copied to the same relative path.
    :param packages: top-level package names copied whole from the current environment.
    :param source_root: where ``files`` are read from.
    """

    def __init__(
        self,
        *,
        files: Sequence[str] = HANDLER_FILES,
        packages: Sequence[str] = HANDLER_PACKAGES,
        source_root: Path = SOURCE_ROOT,
    ) -> None:
        self._files = tuple(files)
        self._packages = tuple(packages)
        self._root = source_root

    def try_bundle(self, output_dir: str, *_options: Any, **_keywords: Any) -> bool:
        """Copy everything into ``output_dir`` and return ``True``; raise :class:`BundlingError` if a part is missing.

        Never returns ``False``: that would make the CDK fall back to Docker, which synth must not need.
        The bundling options (jsii passes them positionally, as one struct) are not needed.
        """
        out = Path(output_dir)
        for rel in self._files:
            src = self._root / rel
            if not src.is_file():
                raise BundlingError(f"{src} is missing: the drain-notifier bundle needs it (run synth from a checkout)")
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        for name in self._packages:
            shutil.copytree(package_dir(name), out / name, ignore=_IGNORED, dirs_exist_ok=True)
        return True


def drain_notifier_code() -> lambda_.Code:
    """The drain-notifier function's code: the local bundle described in this module's docstring."""
    return lambda_.Code.from_asset(
        str(SOURCE_ROOT / "stickyws"),
        asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(image=LAMBDA_RUNTIME.bundling_image, local=CopyLocalBundling()),
    )
