"""Deployment check of the registry ElastiCache cache: TLS, encryption at rest, failover and authentication."""

from __future__ import annotations

from stickyws.audit.checks.engine import REGISTRY, Context, Outcome, Status, define_check, short_name


@define_check(
    "registry-encryption-and-auth",
    "The connection registry requires TLS, encrypts at rest and authenticates its clients (RBAC).",
    REGISTRY,
)
def _registry(ctx: Context) -> Outcome:
    reg = ctx.view.registry
    if reg is None:
        return (
            Status.WARN,
            "no registry read (an existing endpoint, or a live audit without the stack)",
            "audit the stack (--stack-name) or name the cache (--registry-id), or check the registry's TLS and "
            "authentication by hand",
        )
    shape = f"{reg.mode} {short_name(reg.id)}"
    if reg.mode == "cluster":
        shape += f" ({reg.shards} shards x {reg.replicas_per_shard} replicas)"
    elif reg.mode == "single":
        shape += f" ({reg.replicas_per_shard} replicas)"
    tls = "TLS " + (reg.transit_encryption_mode or "on") if reg.transit_encryption else "no TLS"
    at_rest = "encrypted at rest" if reg.at_rest_encryption else "not encrypted at rest"
    groups = f" (user group {', '.join(reg.user_groups)})" if reg.user_groups else ""
    found = f"{shape}: {tls}, {at_rest}, auth {reg.auth or 'not readable'}{groups}"
    construct = " (ConnectionRegistry does)"
    if not reg.transit_encryption or reg.transit_encryption_mode == "preferred":
        return Status.FAIL, found, f"set TransitEncryptionEnabled=true with TransitEncryptionMode=required{construct}"
    if not reg.at_rest_encryption:
        return (
            Status.FAIL,
            found,
            f"create the cache with AtRestEncryptionEnabled=true (it cannot be changed later){construct}",
        )
    if reg.mode != "serverless" and not (reg.multi_az and reg.automatic_failover):
        return (
            Status.FAIL,
            found + "; Multi-AZ automatic failover off",
            f"enable MultiAZ and AutomaticFailover (registry_replicas_per_shard >= 1){construct}",
        )
    if reg.auth is None:
        return Status.WARN, found, "check the user group's users by hand (iam or password authentication)"
    if reg.auth == "none":
        return Status.FAIL, found, "set registry_auth=iam (an RBAC user group with an IAM user; ConnectionRegistry)"
    return Status.PASS, found, ""
