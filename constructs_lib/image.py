"""The server's container image: which Dockerfile builds it, and from what, in a checkout or an installed package.

* From a checkout (the directory above the ``stickyws`` package holds ``pyproject.toml`` and the
  repository's ``Dockerfile``): that Dockerfile, with the repository root as build context
  (narrowed by its ``.dockerignore``); it builds stickyws from source with the pinned constraints.
* From an installed package (the default outside a checkout): a build context staged at synth from
  the installed distribution itself (:func:`installed_context`): the Dockerfile shipped in
  ``constructs_lib/container/`` and the installed files of stickyws (the ``stickyws`` and
  ``constructs_lib`` packages and their ``.dist-info`` metadata, as the wheel installed them)
  re-packed into a wheel. The Dockerfile pip-installs that wheel from the context with the
  ``[server]`` extra: no package index needs to know stickyws; only the extra's third-party
  dependencies come from the index the Docker build reaches.
* With ``server_image(requirement=...)``: the packaged Dockerfile alone, installing that pip
  requirement (a private index's version, a wheel URL), also from a checkout.

Or pass any image to ``WebSocketFargateService(image=...)``. Synth only stages the build context;
``cdk deploy`` builds it, on a machine with Docker.
"""

from __future__ import annotations

import atexit
import base64
import functools
import hashlib
import importlib.metadata
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Final

from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs

import stickyws
from stickyws.compiled import is_build_file

#: The packaged build context: one Dockerfile that pip-installs ``STICKYWS_REQUIREMENT``.
PACKAGED_CONTEXT: Final = Path(__file__).resolve().parent / "container"
#: Build argument of the packaged Dockerfile: the pip requirement it installs.
REQUIREMENT_BUILD_ARG: Final = "STICKYWS_REQUIREMENT"
#: Where the packaged Dockerfile copies its build context inside the image (removed after the install).
IMAGE_CONTEXT_DIR: Final = "/tmp/stickyws-context"
#: The extra the image installs: the reference server and its adapters.
SERVER_EXTRA: Final = "server"
#: The image platform (Fargate tasks of the service run linux/amd64).
PLATFORM: Final = ecr_assets.Platform.LINUX_AMD64
#: Files an installer writes into the ``.dist-info`` folder, which are not part of the wheel.
INSTALLER_FILES: Final = frozenset({"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"})
#: The tag of a pure-Python wheel.
PURE_TAG: Final = "py3-none-any"
#: The tag of a compiled stickyws the image's interpreter (``python:3.11-slim``, linux/amd64) can install.
IMAGE_COMPILED_TAG: Final = "cp311-cp311-linux_x86_64"
#: Timestamp of every member of the re-packed wheel, so the same installation stages the same bytes
#: (the image asset's hash follows the content).
ZIP_TIMESTAMP: Final = (1980, 1, 1, 0, 0, 0)


class InstalledPackageError(ValueError):
    """The default image cannot be staged from the installed stickyws (see the message for what to pass)."""


def checkout_root() -> Path | None:
    """The repository root when ``stickyws`` is imported from a checkout, else ``None``."""
    root = Path(stickyws.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "Dockerfile").is_file() else None


def _installed_distribution() -> importlib.metadata.Distribution:
    """The distribution the imported ``stickyws`` package belongs to, with its file list."""
    imported = Path(stickyws.__file__).resolve()
    try:
        dist = importlib.metadata.distribution("stickyws")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is None or dist.files is None or Path(str(dist.locate_file("stickyws/__init__.py"))).resolve() != imported:
        raise InstalledPackageError(
            f"cannot stage the default server image: stickyws at {imported.parent} is neither a checkout nor an "
            "installed distribution with a file list (RECORD). Install stickyws with pip (pip install "
            "'stickyws[cdk]'), or pass image= to WebSocketFargateService (your image, or "
            "constructs_lib.server_image(requirement='stickyws[server] @ https://.../stickyws-X-py3-none-any.whl'))"
        )
    return dist


def _wheel_tag(dist: importlib.metadata.Distribution) -> str:
    """The tag of the wheel the distribution was installed from (``py3-none-any`` unless WHEEL names one)."""
    wheel = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    return tags[0] if len(tags) == 1 else PURE_TAG


def _pure_wheel_line(line: str) -> str:
    """A line of a compiled wheel's WHEEL file as a pure wheel states it."""
    if line.startswith("Tag:"):
        return f"Tag: {PURE_TAG}\n"
    return "Root-Is-Purelib: true\n" if line.startswith("Root-Is-Purelib:") else line


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def repack_installed(directory: Path) -> Path:
    """Write the installed stickyws distribution as a wheel into ``directory``; returns its path.

    The wheel holds every file the installation's RECORD lists inside site-packages (both packages
    and the ``.dist-info`` metadata: METADATA with the extras, entry points, license), except
    compiled ``.pyc`` files and the installer's own files; RECORD is written anew. A compiled build
    (``stickyws.compiled``) keeps its extension modules when its tag is :data:`IMAGE_COMPILED_TAG`;
    built for another interpreter or platform, they are left out and the wheel is ``py3-none-any``
    (the image then runs the Python sources). Members are sorted and time-stamped
    :data:`ZIP_TIMESTAMP`, so the same installation gives the same bytes.
    Raises :class:`InstalledPackageError` when stickyws is not such an installation, or a listed
    file is missing.
    """
    dist = _installed_distribution()
    meta = dist.metadata
    name, version = meta["Name"].replace("-", "_").lower(), meta["Version"]
    info = f"{name}-{version}.dist-info"
    tag = _wheel_tag(dist)
    keep_compiled = tag == IMAGE_COMPILED_TAG
    members: dict[str, bytes] = {}
    for file in dist.files or ():
        posix = file.as_posix()
        if posix.startswith(("..", "/")) or "__pycache__" in file.parts or file.suffix == ".pyc":
            continue  # console scripts (the installer writes them from entry_points.txt) and compiled files
        if not keep_compiled and is_build_file(posix):
            continue  # built for another interpreter or platform than the image's
        if posix.startswith(f"{info}/") and posix.removeprefix(f"{info}/") in INSTALLER_FILES:
            continue
        path = Path(str(dist.locate_file(file)))
        try:
            members[posix] = path.read_bytes()
        except OSError as exc:
            raise InstalledPackageError(
                f"cannot stage the default server image: {path} of the installed stickyws is unreadable ({exc}); "
                "reinstall stickyws, or pass image= to WebSocketFargateService"
            ) from None
    if not keep_compiled and tag != PURE_TAG:  # the sources alone: a pure wheel
        wheel_file = f"{info}/WHEEL"
        lines = members.get(wheel_file, b"").decode().splitlines(keepends=True)
        members[wheel_file] = "".join(_pure_wheel_line(line) for line in lines).encode()
        tag = PURE_TAG
    record = [_record_line(n, members[n]) for n in sorted(members)] + [f"{info}/RECORD,,"]
    members[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = directory / f"{name}-{version}-{tag}.whl"
    # The wheel convention: packages first, the .dist-info last with RECORD at its end.
    order = sorted(members, key=lambda n: (n.startswith(f"{info}/"), n == f"{info}/RECORD", n))
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member in order:
            entry = zipfile.ZipInfo(member, date_time=ZIP_TIMESTAMP)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, members[member])
    return wheel


@functools.cache
def installed_context() -> tuple[Path, str]:
    """Stage the build context of the installed stickyws once per process: ``(directory, requirement)``.

    The directory (a temporary one, removed when the process exits; the synth has copied it into
    the cloud assembly by then) holds the packaged ``Dockerfile`` and :func:`repack_installed`'s
    wheel; the requirement is that wheel's path inside the image with the ``[server]`` extra, e.g.
    ``/tmp/stickyws-context/stickyws-0.1.0-py3-none-any.whl[server]``.
    """
    directory = Path(tempfile.mkdtemp(prefix="stickyws-image-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    shutil.copy2(PACKAGED_CONTEXT / "Dockerfile", directory / "Dockerfile")
    wheel = repack_installed(directory)
    return directory, f"{IMAGE_CONTEXT_DIR}/{wheel.name}[{SERVER_EXTRA}]"


def server_image(*, requirement: str | None = None) -> ecs.ContainerImage:
    """The reference server's image asset (see the module docstring for which Dockerfile, from what).

    :param requirement: a pip requirement the packaged Dockerfile installs instead of the installed
        stickyws, e.g. ``"stickyws[server] @ https://.../stickyws-0.1.0-py3-none-any.whl"``. Giving
        one always selects the packaged Dockerfile, also from a checkout.
    """
    if requirement is not None:
        context, wanted = PACKAGED_CONTEXT, requirement
    elif (root := checkout_root()) is not None:
        return ecs.ContainerImage.from_asset(str(root), platform=PLATFORM)
    else:
        context, wanted = installed_context()
    return ecs.ContainerImage.from_asset(str(context), platform=PLATFORM, build_args={REQUIREMENT_BUILD_ARG: wanted})
