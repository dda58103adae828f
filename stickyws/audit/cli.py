"""``stickyws audit``: check a template, a live load balancer or Kubernetes manifests against the settings model's
rules.

The report lists failures and warnings with their fixes and counts the rest; ``--verbose`` lists
every row, ``--json`` prints every row as data.

Exit codes: 0 every check passed (warnings allowed), 1 a check failed, 2 the deployment could
not be read (unreadable template or manifests, bad ARN, missing permission or credentials); the
reason is printed as one line on stderr.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from stickyws.cli_errors import CommandError
from stickyws.settings import Settings, SettingsError

EPILOG = """\
sources (exactly one):
  --template cdk.out/StickyWebSocketStack.template.json   a synthesized template, offline
  --stack-name NAME                                       a deployed CloudFormation stack
  --load-balancer-arn ARN [--target-group-arn ARN]        any Application Load Balancer
  --target-group-arn ARN                                  a target group and its load balancer
  --k8s FILE [FILE ...]                                   Kubernetes manifests (kubectl get -o yaml, helm
                                                          template, kustomize build; - reads stdin), offline
report: failures and warnings with their fixes; passes and skipped checks counted (--verbose lists them)
exit codes: 0 all pass, 1 a check failed, 2 could not read
"""


def register(subparsers: Any) -> None:
    """Add ``stickyws audit`` to the CLI."""
    parser = subparsers.add_parser(
        "audit",
        help="check a template, a live ALB/target group/ECS service or Kubernetes manifests against the stickyws rules",
        description="Check a synthesized template, a live ALB, target group and ECS service, or Kubernetes "
        "manifests against the settings model's rules and the deployment checks; print a table (or JSON).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("source")
    source.add_argument(
        "--template", metavar="PATH", help="synthesized CloudFormation template (JSON), or a cdk.out directory with one"
    )
    source.add_argument("--stack-name", metavar="NAME", help="deployed CloudFormation stack")
    source.add_argument("--load-balancer-arn", metavar="ARN", help="any Application Load Balancer")
    source.add_argument("--target-group-arn", metavar="ARN", help="target group (with or without --load-balancer-arn)")
    source.add_argument(
        "--k8s",
        metavar="FILE",
        nargs="+",
        help="Kubernetes manifests: the workload, its Service and Ingress or Gateway API objects (multi-document "
        "YAML as kubectl get -o yaml, helm template or kustomize build print it; - reads standard input)",
    )
    source.add_argument(
        "--registry-id",
        metavar="ID",
        help="ElastiCache replication group id or Serverless cache name of the registry (with an ARN; a stack "
        "names its own)",
    )
    aws = parser.add_argument_group("AWS (live sources; credentials and AWS_ENDPOINT_URL as boto3 reads them)")
    aws.add_argument("--region", help="AWS region (default: from the environment or profile)")
    aws.add_argument("--profile", help="AWS named profile (default: from the environment)")
    parser.add_argument(
        "--json", action="store_true", help="print the whole result as JSON (every row) instead of the report"
    )
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="list every row: passes with what they read, skipped ones with the reason (default: failures and "
        "warnings only)",
    )
    parser.add_argument(
        "--assume",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="a setting to judge with, over what the container and the infrastructure show; the report names "
        "each value it replaced (repeatable). For your own server, an assumed server setting counts as told.",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Read the chosen source, audit it, print the table or JSON; returns the exit code."""
    # Only when auditing (start-up time: `stickyws --help` imports every command module).
    from stickyws.audit.checks import audit
    from stickyws.audit.report import render_table, to_json

    assume = {}
    for item in args.assume:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CommandError(f"--assume wants NAME=VALUE, got {item!r}")
        assume[name.strip()] = value.strip()
    try:
        Settings().with_overrides(assume)
    except SettingsError as exc:
        raise CommandError("--assume: " + "; ".join(f.render() for f in exc.findings)) from None
    result = _audit_manifests(args, assume) if args.k8s else audit(_read(args), assume)
    if args.json:
        print(json.dumps(to_json(result), indent=2))
    else:
        print(render_table(result, verbose=args.verbose))
    return result.exit_code


def _audit_manifests(args: argparse.Namespace, assume: dict[str, str]) -> Any:
    """The audit of the manifests ``--k8s`` names (no AWS call: the files alone)."""
    # Only for --k8s: it loads PyYAML.
    from stickyws.audit.k8s import ManifestError, audit_manifests

    others = [args.template, args.stack_name, args.load_balancer_arn, args.target_group_arn]
    if any(others):
        raise CommandError(
            "pass exactly one source: --template PATH, --stack-name NAME, --load-balancer-arn/--target-group-arn "
            "ARN, or --k8s FILE..."
        )
    if args.region or args.profile or args.registry_id:
        raise CommandError("--region/--profile/--registry-id apply to live sources, not to --k8s")
    try:
        return audit_manifests(args.k8s, assume)
    except ManifestError as exc:
        raise CommandError(str(exc)) from None


def _read(args: argparse.Namespace) -> Any:
    # Only when auditing (start-up time: `stickyws --help` imports every command module).
    from stickyws.audit.from_template import TemplateError, load_template, view_from_template

    live = args.stack_name or args.load_balancer_arn or args.target_group_arn
    chosen = [bool(args.template), bool(args.stack_name), bool(args.load_balancer_arn or args.target_group_arn)]
    if sum(chosen) != 1:
        raise CommandError(
            "pass exactly one source: --template PATH, --stack-name NAME, --load-balancer-arn/--target-group-arn "
            "ARN, or --k8s FILE..."
        )
    if args.registry_id and not (args.load_balancer_arn or args.target_group_arn):
        raise CommandError(
            "--registry-id goes with --load-balancer-arn/--target-group-arn (templates and stacks name it)"
        )
    if args.template:
        if args.region or args.profile:
            raise CommandError("--region/--profile apply to live sources, not to --template")
        try:
            return view_from_template(load_template(args.template), f"template {args.template}")
        except TemplateError as exc:
            raise CommandError(str(exc)) from None
    assert live
    # Only for a live source: it loads boto3 (optional: the server extra).
    from stickyws.audit.from_aws import ReadError, make_session, read_load_balancer, read_stack, read_target_group

    try:
        session = make_session(args.region, args.profile)
        if args.stack_name:
            return read_stack(session, args.stack_name)
        if args.load_balancer_arn:
            return read_load_balancer(session, args.load_balancer_arn, args.target_group_arn, args.registry_id)
        return read_target_group(session, args.target_group_arn, args.registry_id)
    except ReadError as exc:
        raise CommandError(str(exc)) from None
