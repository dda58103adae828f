"""The container health check of the server: which probe ECS runs inside the task, if any.

ECS runs a container health check INSIDE the container, with the image's own tools; a probe the
image cannot run marks every task unhealthy, and the deployment circuit breaker rolls back. So the
check is a choice that depends on the image:

* :meth:`ContainerHealthCheck.reference` (default for ``server_mode=reference``): the reference
  server's Dockerfile one-liner, ``python -c "urllib.request.urlopen(...)"``; needs ``python`` in
  the image, and passes on status 200 only.
* :meth:`ContainerHealthCheck.http` (``tool="wget"`` or ``"curl"``): ``CMD-SHELL`` with ``wget`` or
  ``curl``; needs ``/bin/sh`` and that tool, and passes on any 2xx (``wget`` follows redirects, and
  so passes on a 3xx leading to a 2xx). What common base images ship:

  - ``node:<v>`` and ``golang:<v>`` (Debian, full): a shell, ``curl`` and ``wget``;
  - ``node:<v>-alpine``, ``golang:<v>-alpine``, ``alpine``: a shell and BusyBox ``wget``, no ``curl``;
  - ``node:<v>-slim``, ``python:<v>-slim``, ``debian:<v>-slim``: a shell, neither ``wget`` nor
    ``curl`` (install one, or use :meth:`command` with the runtime, e.g.
    ``node -e "fetch(...)"``);
  - ``gcr.io/distroless/*`` and ``scratch`` (common for Go): no shell, no ``wget``, no ``curl``:
    use :meth:`command` with a probe built into your binary, or :meth:`none`.

* :meth:`ContainerHealthCheck.command`: your own command, exactly as ECS takes it (``["CMD", ...]``
  or ``["CMD-SHELL", "..."]``).
* :meth:`ContainerHealthCheck.none` (default for ``server_mode=own``): no container health check.
  The load balancer's target health check (``health_check_path`` on the target group) still guards
  each task: a target that fails it gets no new connections, and ECS replaces the task.

Every check but ``none`` runs with the settings' timing: ``health_check_interval_s``,
``health_check_timeout_s`` (at most ECS's 60 s), ``unhealthy_threshold_count`` retries and
``health_check_grace_s`` as start period (at most ECS's 300 s). The probes address
``http://127.0.0.1:<port><health_check_path>`` with a timeout one second below the check's.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Final, Literal

from aws_cdk import Duration
from aws_cdk import aws_ecs as ecs

from stickyws.settings import Settings

#: ECS container health-check limits (narrower than the ALB's for the timeout and start period).
ECS_HEALTH_TIMEOUT_MAX_S: Final = 60
ECS_HEALTH_START_PERIOD_MAX_S: Final = 300
#: First word of an ECS health-check command: run it directly, or with the image's ``/bin/sh -c``.
_COMMAND_KINDS: Final = ("CMD", "CMD-SHELL")

HttpTool = Literal["wget", "curl"]
CheckKind = Literal["reference", "http", "command", "none"]


def probe_timeout_s(settings: Settings) -> int:
    """The probe's own timeout: one second below the check's (capped at ECS's 60 s), at least 1 s."""
    return max(1, min(int(settings["health_check_timeout_s"]), ECS_HEALTH_TIMEOUT_MAX_S) - 1)


def probe_url(settings: Settings) -> str:
    """The URL a probe inside the task polls: the container port and the target group's health path."""
    return f"http://127.0.0.1:{settings['port']}{settings['health_check_path']}"


def reference_command(settings: Settings) -> list[str]:
    """The reference server's check: the Dockerfile's python urllib one-liner on the settings' port and path."""
    script = (
        "import urllib.request,sys; "
        f"sys.exit(0 if urllib.request.urlopen({probe_url(settings)!r}, timeout={probe_timeout_s(settings)})"
        ".status == 200 else 1)"
    )
    return ["CMD", "python", "-c", script]


def http_command(settings: Settings, tool: HttpTool = "wget") -> list[str]:
    """A ``CMD-SHELL`` probe with ``wget`` (GNU or BusyBox) or ``curl``: exit 0 on a 2xx, 1 otherwise."""
    url, timeout_s = shlex.quote(probe_url(settings)), probe_timeout_s(settings)
    if tool == "wget":
        probe = f"wget -q -O /dev/null -T {timeout_s} {url}"
    elif tool == "curl":
        probe = f"curl -fsS -o /dev/null -m {timeout_s} {url}"
    else:
        raise ValueError(f"http health check tool {tool!r}: use 'wget' or 'curl'")
    return ["CMD-SHELL", f"{probe} || exit 1"]


@dataclass(frozen=True)
class ContainerHealthCheck:
    """Which container health check the server's task runs (see the module doc for what each assumes).

    Build one with :meth:`reference`, :meth:`http`, :meth:`command` or :meth:`none`.
    """

    kind: CheckKind
    tool: HttpTool = "wget"
    argv: tuple[str, ...] = ()

    @classmethod
    def reference(cls) -> ContainerHealthCheck:
        """The reference server's python one-liner (needs ``python`` in the image)."""
        return cls("reference")

    @classmethod
    def http(cls, tool: HttpTool = "wget") -> ContainerHealthCheck:
        """An HTTP probe with no interpreter: ``CMD-SHELL`` with ``wget`` (default) or ``curl``.

        Assumes the image has ``/bin/sh`` and that tool (Alpine's BusyBox ``wget`` will do).
        """
        if tool not in ("wget", "curl"):
            raise ValueError(f"http health check tool {tool!r}: use 'wget' or 'curl'")
        return cls("http", tool=tool)

    @classmethod
    def command(cls, *argv: str) -> ContainerHealthCheck:
        """Your own probe, exactly as ECS takes it; exit status 0 means healthy.

        ``command("CMD", "/app/server", "--healthcheck")`` runs a program directly (no shell needed);
        ``command("CMD-SHELL", "<one shell command line>")`` runs it with the image's ``/bin/sh -c``,
        e.g. a ``node -e`` line that fetches the health path on a ``node:<v>-slim`` image.
        """
        if len(argv) < 2 or argv[0] not in _COMMAND_KINDS:
            raise ValueError(
                f"health check command {list(argv)!r}: start with 'CMD' (then the program and its arguments) "
                "or 'CMD-SHELL' (then one shell command line)"
            )
        return cls("command", argv=tuple(argv))

    @classmethod
    def none(cls) -> ContainerHealthCheck:
        """No container health check; the load balancer's target health check still guards each task."""
        return cls("none")

    @classmethod
    def default_for(cls, settings: Settings) -> ContainerHealthCheck:
        """:meth:`reference` for the reference server, :meth:`none` for your own (``server_mode=own``)."""
        return cls.none() if settings.own_server else cls.reference()

    def command_for(self, settings: Settings) -> list[str] | None:
        """The ECS command of this check for ``settings``; ``None`` for :meth:`none`."""
        if self.kind == "reference":
            return reference_command(settings)
        if self.kind == "http":
            return http_command(settings, self.tool)
        if self.kind == "command":
            return list(self.argv)
        return None

    def render(self, settings: Settings) -> ecs.HealthCheck | None:
        """The ``ecs.HealthCheck`` with the settings' interval, timeout, retries and start period (ECS limits)."""
        command = self.command_for(settings)
        if command is None:
            return None
        return ecs.HealthCheck(
            command=command,
            interval=Duration.seconds(settings["health_check_interval_s"]),
            timeout=Duration.seconds(min(settings["health_check_timeout_s"], ECS_HEALTH_TIMEOUT_MAX_S)),
            retries=settings["unhealthy_threshold_count"],
            start_period=Duration.seconds(min(settings["health_check_grace_s"], ECS_HEALTH_START_PERIOD_MAX_S)),
        )
