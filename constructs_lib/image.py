"""The server's container image: which Dockerfile builds it, from a checkout or from an installed package.

* From a checkout (the directory above the ``stickyws`` package holds ``pyproject.toml`` and the
  repository's ``Dockerfile``): that Dockerfile, with the repository root as build context
  (narrowed by its ``.dockerignore``); it builds stickyws from source with the pinned constraints.
* From an installed package: the Dockerfile shipped in ``constructs_lib/container/``, which
  pip-installs :func:`default_requirement` (``stickyws[server]==<installed version>``) from the
  package index. Pass another requirement (a private index's version, a wheel URL) to
  :func:`server_image`, or any image to ``WebSocketFargateService(image=...)``.

Synth only stages the build context; ``cdk deploy`` builds it, on a machine with Docker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs

import stickyws

#: The packaged build context: one Dockerfile that installs stickyws from a package index.
PACKAGED_CONTEXT: Final = Path(__file__).resolve().parent / "container"
#: Build argument of the packaged Dockerfile: the pip requirement it installs.
REQUIREMENT_BUILD_ARG: Final = "STICKYWS_REQUIREMENT"
#: The image platform (Fargate tasks of the service run linux/amd64).
PLATFORM: Final = ecr_assets.Platform.LINUX_AMD64


def checkout_root() -> Path | None:
    """The repository root when ``stickyws`` is imported from a checkout, else ``None``."""
    root = Path(stickyws.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "Dockerfile").is_file() else None


def default_requirement() -> str:
    """The pip requirement of the installed stickyws with the server extra, e.g. ``stickyws[server]==0.1.0``."""
    return f"stickyws[server]=={stickyws.__version__}"


def server_image(*, requirement: str | None = None) -> ecs.ContainerImage:
    """The reference server's image asset (see the module docstring for which Dockerfile).

    :param requirement: what the packaged Dockerfile pip-installs. Default: :func:`default_requirement`.
        Giving one always selects the packaged Dockerfile, also from a checkout.
    """
    root = checkout_root()
    if root is not None and requirement is None:
        return ecs.ContainerImage.from_asset(str(root), platform=PLATFORM)
    return ecs.ContainerImage.from_asset(
        str(PACKAGED_CONTEXT),
        platform=PLATFORM,
        build_args={REQUIREMENT_BUILD_ARG: requirement or default_requirement()},
    )
