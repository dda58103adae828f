"""``stickyws k8s render``: print the Kubernetes manifests of the settings as multi-document YAML.

``stickyws k8s render [-c NAME=VALUE ...] [--settings-file F] [--image IMAGE] [--api ingress|gateway]
[--name NAME] [--certificate-arn ARN] [--internal]`` writes the YAML to stdout (for ``kubectl apply -f -``,
a Helm chart's templates or a kustomize base) and the rules' warnings to stderr. Settings that must not be
deployed, an unknown setting or a value that does not parse print one line each and exit 2, with nothing
on stdout; so does your own server (``server_mode=own``) without ``--image``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from stickyws.cli_errors import CommandError


def register(subparsers: Any) -> None:
    """Add ``k8s render``."""
    k8s = subparsers.add_parser(
        "k8s",
        help="Kubernetes on EKS: render the settings into manifests for the AWS Load Balancer Controller",
        description="Kubernetes on EKS behind the AWS Load Balancer Controller (docs/eks.md).",
    )
    commands = k8s.add_subparsers(dest="k8s_command", metavar="COMMAND", required=True)
    render = commands.add_parser(
        "render",
        help="print the Deployment, Service, PDB, HPA and the Ingress or Gateway API objects as YAML",
        description="Judge the settings for a Kubernetes deployment (load balancer, workload, server) and print "
        "the manifests as multi-document YAML; warnings go to stderr.",
    )
    render.add_argument(
        "-c",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting (repeatable), e.g. -c idle_timeout_s=300 -c server_mode=own",
    )
    render.add_argument("--settings-file", metavar="FILE", help="JSON or TOML file of settings, applied before -c")
    render.add_argument("--image", help="container image (required with server_mode=own: your server's image)")
    render.add_argument("--api", choices=("ingress", "gateway"), help="same as -c k8s_api=...")
    render.add_argument("--name", default="stickyws", help="name of the Deployment, Service, ... (default stickyws)")
    render.add_argument("--certificate-arn", metavar="ARN", help="ACM certificate: one HTTPS listener on 443")
    render.add_argument("--internal", action="store_true", help="an internal ALB instead of an internet-facing one")
    render.set_defaults(run=run_render)


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for item in args.overrides:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"-c {item!r}: use NAME=VALUE, e.g. -c idle_timeout_s=300")
        overrides[name.strip()] = value
    if args.api:
        overrides["k8s_api"] = args.api
    return overrides


def run_render(args: argparse.Namespace) -> int:
    """Run ``stickyws k8s render``."""
    from stickyws.k8s.app import DEFAULT_IMAGE, WebSocketApp
    from stickyws.k8s.render import render
    from stickyws.settings import Settings, SettingsError, load_file

    settings = Settings()
    if args.settings_file:
        settings = settings.with_overrides(load_file(args.settings_file))
    settings = settings.with_overrides(_overrides(args))
    if settings.own_server and not args.image:
        raise CommandError("server_mode=own needs --image: the image of your server")
    app = WebSocketApp(
        settings,
        image=args.image or DEFAULT_IMAGE,
        name=args.name,
        certificate_arn=args.certificate_arn,
        internet_facing=not args.internal,
    )
    try:
        rendered = render(app)
    except SettingsError:
        raise  # the dispatcher prints it: one line per setting and its fix, exit 2
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    text = rendered.yaml()
    for finding in rendered.warnings():
        print(f"stickyws: warning: {finding.render()}", file=sys.stderr)
    sys.stdout.write(text)
    return 0
