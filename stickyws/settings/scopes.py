"""Which parts of a deployment a rule speaks of, and which settings a deployment's server is told.

A rule carries the :class:`Scope` values it needs. A caller names the *parts* it has in front of it
(a load balancer, an ECS service, a server, a registry, a Kubernetes workload); the rules whose scopes
are all present run, and the others are skipped with a reason (see :func:`stickyws.settings.rules.plan`).

A deployment runs on ECS (``SERVICE``) or on Kubernetes (``KUBERNETES``). The Kubernetes rules are left
out of a plan whose parts do not name ``KUBERNETES`` (neither run nor listed as skipped), so an ECS stack,
its audit and its annotations never speak of Kubernetes; a Kubernetes deployment names ``KUBERNETES``
and not ``SERVICE``, so the ECS rules (the Fargate stop timeout cap, task sizes, ...) are skipped there.

Two scopes are never passed in, they follow from the server mode (the setting ``server_mode``):

* ``REFERENCE_SERVER`` and ``CLIENT`` are present when the deployment has a server and that server
  is the reference server: its registry keys, sessions, delivery and publish endpoint, and the
  reference client's reconnect backoff.
* For your own server (``server_mode=own``) a server-side setting counts only when your server is
  told it (``server_env``): a rule that compares the ALB's idle timeout with a ping interval your
  server never reads has nothing to judge, and is skipped, saying so.

A leaf module: standard library only.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from typing import Final


class Scope(enum.Enum):
    """A part of a deployment that a rule speaks of."""

    #: The Application Load Balancer, its listener and its target group.
    LOAD_BALANCER = "load_balancer"
    #: The ECS service and its Fargate tasks: size, counts, deployments, stop timeout, autoscaling.
    SERVICE = "service"
    #: The WebSocket server, whichever it is: what it does that the load balancer and tasks must agree with
    #: (port, pings, drain, shutdown, limits).
    SERVER = "server"
    #: The reference server's own mechanisms: registry keys and TTLs, sessions, delivery, the publish endpoint.
    REFERENCE_SERVER = "reference_server"
    #: The reference client's reconnect backoff.
    CLIENT = "client"
    #: The ElastiCache connection registry the stack creates.
    REGISTRY = "registry"
    #: The Kubernetes workload on EKS: Deployment (preStop, grace period, rollout), PodDisruptionBudget,
    #: HorizontalPodAutoscaler, and the AWS Load Balancer Controller's target type and readiness gate.
    KUBERNETES = "kubernetes"


#: The parts a caller may name; ``REFERENCE_SERVER`` and ``CLIENT`` follow from the server mode.
PARTS: Final = frozenset({Scope.LOAD_BALANCER, Scope.SERVICE, Scope.SERVER, Scope.REGISTRY, Scope.KUBERNETES})
#: What the reference (ECS) stack has, and what a plan judges when no parts are named.
STACK_PARTS: Final = frozenset({Scope.LOAD_BALANCER, Scope.SERVICE, Scope.SERVER, Scope.REGISTRY})
#: What a Kubernetes deployment behind the AWS Load Balancer Controller has (the registry is the user's own).
K8S_PARTS: Final = frozenset({Scope.LOAD_BALANCER, Scope.KUBERNETES, Scope.SERVER})
#: Parts whose rules are in a plan only when the caller names the part (else left out, not skipped).
OPT_IN_PARTS: Final = frozenset({Scope.KUBERNETES})
#: Every scope.
ALL_SCOPES: Final = frozenset(Scope)

#: The scope of each settings group.
GROUP_SCOPES: Final[Mapping[str, Scope]] = {
    "load_balancer": Scope.LOAD_BALANCER,
    "target_group": Scope.LOAD_BALANCER,
    "server": Scope.SERVER,
    "client": Scope.CLIENT,
    "delivery": Scope.REFERENCE_SERVER,
    "task": Scope.SERVICE,
    "deployment": Scope.SERVICE,
    "registry": Scope.REGISTRY,
    "kubernetes": Scope.KUBERNETES,
}
#: Groups whose settings describe the server's behaviour: for your own server, only those it is told count.
SERVER_SIDE_GROUPS: Final = frozenset({"server", "client", "delivery"})
#: Server-side settings that hold for any server without being told: the container port the task maps,
#: and the server mode itself.
ALWAYS_KNOWN: Final = frozenset({"port", "server_mode", "server_env"})

SERVER_MODES: Final = ("reference", "own")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_server_env(entries: Iterable[str], env_name_of: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """``server_env`` entries as ``{setting name: environment variable}`` and the problems found, in order.

    An entry is ``name=VARIABLE`` or a bare ``name`` (then the variable is ``env_name_of[name]``, the
    ``STICKYWS_*`` name). An entry that is not of that form, names an unknown setting, or repeats a
    setting or a variable is left out and described in the problems (each says what to write).
    """
    told: dict[str, str] = {}
    problems: list[str] = []
    for entry in entries:
        name, sep, variable = (part.strip() for part in entry.partition("="))
        variable = variable if sep else env_name_of.get(name, "")
        if name not in env_name_of:
            problems.append(f"server_env entry {entry!r} does not name a setting (write NAME=VARIABLE, e.g. port=PORT)")
        elif name in told:
            problems.append(f"server_env names {name} twice")
        elif not _ENV_NAME.fullmatch(variable):
            problems.append(f"server_env entry {entry!r}: {variable!r} is not an environment variable name")
        elif variable in told.values():
            problems.append(f"server_env gives two settings the variable {variable}")
        else:
            told[name] = variable
    return told, problems
