"""``stickyws`` command line: one entry point, one module per command group.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)``, which adds its
sub-commands with ``set_defaults(run=callable)``; ``callable(args) -> int`` is the exit code.
Modules keep heavy imports inside their ``run`` functions so ``stickyws --help`` stays fast.
Errors the user can fix are printed as one line (``stickyws: ...``), never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from stickyws import __version__, compiled
from stickyws.cli_errors import CommandError
from stickyws.settings import SettingsError

#: Modules that add sub-commands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "stickyws.server.cli",
    "stickyws.audit.cli",
    "stickyws.client.cli",
    "stickyws.publish.cli",
    "stickyws.twin.cli",
    "stickyws.k8s.cli",
)

#: Third-party top-level modules a command may need, and the extra that installs each.
EXTRA_OF_MODULE: dict[str, str] = {
    "aiohttp": "server",
    "uvloop": "server",
    "redis": "server",
    "jwt": "server",
    "boto3": "server",
    "botocore": "server",
    "aws_cdk": "cdk",
    "constructs": "cdk",
    "cdk_nag": "cdk",
    "moto": "testing",
    "yaml": "k8s",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered command."""
    parser = argparse.ArgumentParser(
        prog="stickyws", description="Sticky WebSocket services behind an AWS Application Load Balancer."
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"stickyws {__version__} ({compiled.state().describe()})",
        help="print the installed version and the build of the per-message path (compiled or pure Python), and exit",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``stickyws``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        code: int = run(args)
    except CommandError as exc:
        print(f"stickyws: {exc}", file=sys.stderr)
        return exc.code
    except SettingsError as exc:
        print(f"stickyws: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRA_OF_MODULE:
            raise
        extra = EXTRA_OF_MODULE[top]
        print(
            f"stickyws: `{args.command}` needs the Python package {top!r}, which is not installed: "
            f"pip install 'stickyws[{extra}]'",
            file=sys.stderr,
        )
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
