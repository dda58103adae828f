"""The CDK app: the reference stack built from settings in the CDK context.

``make synth`` (``npx --no-install cdk synth``) runs this file. Every setting of the model can be
overridden with ``-c NAME=VALUE`` or a ``-c settings_file=PATH`` (JSON or TOML); the deployment
options below choose TLS, the environment and reuse. docs/iac.md lists every context name.

Settings errors print one message naming each setting and its fix, and exit 1 (no traceback).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Final

from aws_cdk import Annotations, App, Environment

from constructs_lib.nag import add_aws_solutions_checks
from stacks import HostedZoneRef, StickyWebSocketStack
from stickyws.settings import CONTEXT_SETTINGS_FILE, FIELDS, Finding, SettingsError, Severity, parse_bool, resolve

STACK_ID: Final = "StickyWebSocketStack"
DEFAULT_HTTP_ONLY_WARNING_ID: Final = "stickyws:app:default-http-only"


class Context:
    """Context names that are deployment options rather than settings (settings use their own names)."""

    ACCOUNT: Final = "account"
    REGION: Final = "region"
    AVAILABILITY_ZONES: Final = "availability_zones"
    HTTP_ONLY: Final = "http_only"
    CERTIFICATE_ARN: Final = "certificate_arn"
    DOMAIN_NAME: Final = "domain_name"
    HOSTED_ZONE_ID: Final = "hosted_zone_id"
    HOSTED_ZONE_NAME: Final = "hosted_zone_name"
    INTERNET_FACING: Final = "internet_facing"
    REGISTRY_URL: Final = "registry_url"

    ALL: Final = (
        ACCOUNT,
        REGION,
        AVAILABILITY_ZONES,
        HTTP_ONLY,
        CERTIFICATE_ARN,
        DOMAIN_NAME,
        HOSTED_ZONE_ID,
        HOSTED_ZONE_NAME,
        INTERNET_FACING,
        REGISTRY_URL,
    )


def read_context(app: App) -> dict[str, Any]:
    """Every setting name, ``settings_file`` and each deployment option present in the app's context."""
    names = (CONTEXT_SETTINGS_FILE, *FIELDS, *Context.ALL)
    values = {name: app.node.try_get_context(name) for name in names}
    return {name: value for name, value in values.items() if value is not None}


def availability_zones_context(context: Mapping[str, Any]) -> dict[str, list[str]]:
    """The ``availability-zones:account=A:region=R`` context entry for a fixed env, so no lookup runs.

    Zones come from the ``availability_zones`` context (comma list), else ``<region>a,<region>b``.
    """
    account, region = str(context[Context.ACCOUNT]), str(context[Context.REGION])
    raw = context.get(Context.AVAILABILITY_ZONES)
    if isinstance(raw, (list, tuple)):
        zones = [str(z).strip() for z in raw if str(z).strip()]
    elif raw:
        zones = [z.strip() for z in str(raw).split(",") if z.strip()]
    else:
        zones = [f"{region}a", f"{region}b"]
    return {f"availability-zones:account={account}:region={region}": zones}


def build(app: App) -> StickyWebSocketStack:
    """Add the reference stack (and cdk-nag) to ``app`` from its context.

    Raises :class:`SettingsError` for settings or deployment options that must not be synthesized.
    """
    context = read_context(app)
    settings = resolve(context)
    if settings.own_server:
        raise _option_error(
            "server_mode=own: this app's stack runs the reference server",
            "compose the constructs with your image in your own CDK app (README.md, 'Your own server'; "
            "docs/iac-components.md), or leave server_mode at reference here",
            "server_mode",
        )

    env: Environment | None = None
    has_account, has_region = Context.ACCOUNT in context, Context.REGION in context
    if has_account != has_region:
        raise _option_error(
            "account and region go together", "pass both -c account=ID -c region=NAME, or neither", Context.ACCOUNT
        )
    if has_account:
        for key, zones in availability_zones_context(context).items():
            if app.node.try_get_context(key) is None:
                app.node.set_context(key, zones)
        env = Environment(account=str(context[Context.ACCOUNT]), region=str(context[Context.REGION]))

    certificate_arn = _text(context, Context.CERTIFICATE_ARN)
    domain_name = _text(context, Context.DOMAIN_NAME)
    hosted_zone = _hosted_zone(context)
    explicit_http_only = _flag(context, Context.HTTP_ONLY)
    implicit_http_only = explicit_http_only is None and certificate_arn is None and hosted_zone is None
    http_only = bool(explicit_http_only) or implicit_http_only
    internet_facing = _flag(context, Context.INTERNET_FACING)

    add_aws_solutions_checks(app)
    try:
        stack = StickyWebSocketStack(
            app,
            STACK_ID,
            env=env,
            settings=settings,
            certificate_arn=certificate_arn,
            domain_name=domain_name,
            hosted_zone=hosted_zone,
            http_only=http_only,
            internet_facing=True if internet_facing is None else internet_facing,
            registry_url=_text(context, Context.REGISTRY_URL),
        )
    except SettingsError:
        raise
    except ValueError as exc:  # a construct refusing a combination of options; its message says the fix
        raise _option_error(str(exc), "see the context names in docs/iac.md", "context") from None
    if implicit_http_only:
        Annotations.of(stack).add_warning_v2(
            DEFAULT_HTTP_ONLY_WARNING_ID,
            "No certificate given, so this is the HTTP-only DEMO mode (ws://, no TLS). Pass "
            "-c certificate_arn=arn:aws:acm:... (or -c domain_name=... -c hosted_zone_id=... "
            "-c hosted_zone_name=...) for HTTPS, or -c http_only=true to choose the demo mode explicitly.",
        )
    return stack


def main() -> int:
    """Synthesize the app; on a settings error print its message to stderr and return 1."""
    app = App()
    try:
        build(app)
    except SettingsError as exc:
        print(f"stickyws: cannot synthesize {STACK_ID}:\n{exc}", file=sys.stderr)
        return 1
    app.synth()
    return 0


def _text(context: Mapping[str, Any], name: str) -> str | None:
    value = context.get(name)
    return str(value).strip() or None if value is not None else None


def _flag(context: Mapping[str, Any], name: str) -> bool | None:
    value = context.get(name)
    if value is None or isinstance(value, bool):
        return value
    try:
        return parse_bool(value)
    except ValueError:
        pass
    raise _option_error(f"{name}={value!r} is not true or false", f"pass -c {name}=true or -c {name}=false", name)


def _hosted_zone(context: Mapping[str, Any]) -> HostedZoneRef | None:
    zone_id, zone_name = _text(context, Context.HOSTED_ZONE_ID), _text(context, Context.HOSTED_ZONE_NAME)
    if zone_id is None and zone_name is None:
        return None
    if zone_id is None or zone_name is None or _text(context, Context.DOMAIN_NAME) is None:
        raise _option_error(
            "a hosted zone needs hosted_zone_id, hosted_zone_name and domain_name",
            "pass -c domain_name=ws.example.com -c hosted_zone_id=Z0123... -c hosted_zone_name=example.com "
            "(no lookup is made, so the zone name cannot be found from the id)",
            Context.HOSTED_ZONE_ID,
        )
    return HostedZoneRef(zone_id=zone_id, zone_name=zone_name)


def _option_error(message: str, fix: str, name: str) -> SettingsError:
    return SettingsError([Finding(rule="context", severity=Severity.ERROR, message=message, fix=fix, settings=(name,))])


if __name__ == "__main__":
    sys.exit(main())
