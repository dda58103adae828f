"""The ECS agent's task scale-in protection endpoint, called on the decisions of :mod:`stickyws.server.protection`.

The endpoint (Amazon ECS developer guide, "Amazon ECS task scale-in protection endpoint"): the ECS
agent injects ``ECS_AGENT_URI`` into every container of a task; ``PUT $ECS_AGENT_URI/task-protection/v1/state``
with the JSON body ``{"ProtectionEnabled": true|false, "ExpiresInMinutes": N}`` protects or releases
the task (``ExpiresInMinutes`` 1 to 2880, 120 when left out), and ``GET`` on the same path reads it.
The agent answers ``{"protection": {"ProtectionEnabled", "ExpirationDate", "TaskArn"}}``; a refusal
carries ``{"failure": {"Arn", "Reason", "Detail"}}`` or ``{"error": {"Arn", "Code", "Message"}}``
instead (the failure shape is the one public clients read; the error shape is the agent's own and was
not seen in the guide). The agent calls the ECS API ``UpdateTaskProtection`` with the task role, so
the task role needs ``ecs:UpdateTaskProtection`` (and ``ecs:GetTaskProtection`` for the ``GET``);
only tasks of a service can be protected (a standalone task gets ``TASK_NOT_VALID``).

:class:`TaskProtection` runs the policy on the server's heartbeat interval, only when ``ECS_AGENT_URI``
is set and the setting ``scale_in_protection`` is on. Each call runs in a worker thread with a
timeout (:data:`CALL_TIMEOUT_S`), so the server never waits on the agent; a failed call is logged
once per kind of failure, as one line and never a traceback, and the decision is made again on the
next beat.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from stickyws.server.protection import Action, Decision, FleetEntry, ProtectionPolicy, read_fleet

log = logging.getLogger("stickyws.server")

#: The variable the ECS agent sets in every container of a task.
ENV_ECS_AGENT_URI = "ECS_AGENT_URI"
#: The endpoint's path under ``$ECS_AGENT_URI``.
STATE_PATH = "/task-protection/v1/state"
#: Seconds one call to the agent may take.
CALL_TIMEOUT_S = 5.0
#: Seconds shutdown waits for its release: the stop timeout is short, and an unreleased protection lapses anyway.
SHUTDOWN_WAIT_S = 2.0


@dataclass(frozen=True)
class AgentAnswer:
    """What the agent answered: ``ok`` when it took the request; ``detail`` says what it said."""

    ok: bool
    detail: str


def put_state(
    agent_uri: str, enabled: bool, expires_in_min: int | None, timeout_s: float = CALL_TIMEOUT_S
) -> AgentAnswer:
    """``PUT {agent_uri}/task-protection/v1/state`` (blocking; run it in a thread). Never raises."""
    body: dict[str, object] = {"ProtectionEnabled": enabled}
    if enabled and expires_in_min is not None:
        body["ExpiresInMinutes"] = expires_in_min
    request = urllib.request.Request(
        agent_uri.rstrip("/") + STATE_PATH,
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status, text = response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode("utf-8", "replace")
    except (OSError, ValueError) as exc:
        return AgentAnswer(False, f"the ECS agent at {agent_uri} did not answer: {exc}")
    return read_answer(status, text)


def read_answer(status: int, text: str) -> AgentAnswer:
    """The agent's answer from its status and body (see the module docstring for the shapes)."""
    try:
        parsed = json.loads(text) if text.strip() else {}
    except ValueError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    for key, fields in (("failure", ("Reason", "Detail")), ("error", ("Code", "Message"))):
        part = parsed.get(key)
        if isinstance(part, dict):
            said = ": ".join(str(part[f]) for f in fields if part.get(f))
            return AgentAnswer(False, f"the ECS agent refused (HTTP {status}, {key}): {said or part}")
    if not 200 <= status < 300:
        return AgentAnswer(False, f"the ECS agent answered HTTP {status}: {text[:200]}")
    protection = parsed.get("protection")
    if isinstance(protection, dict):
        return AgentAnswer(
            True, f"ProtectionEnabled={protection.get('ProtectionEnabled')} until {protection.get('ExpirationDate')}"
        )
    return AgentAnswer(True, f"HTTP {status}")


#: How a call reaches the agent: ``(agent_uri, enabled, expires_in_min) -> AgentAnswer`` (blocking).
PutState = Callable[[str, bool, int | None], AgentAnswer]


class TaskProtection:
    """Holds this task's scale-in protection as the policy decides (see the module docstring).

    ``heartbeats`` reads every server's heartbeat value (``Registry.server_heartbeats``; it may raise,
    then the fleet counts as unknown); ``connections`` and ``draining`` read this server's state.
    """

    def __init__(
        self,
        *,
        policy: ProtectionPolicy,
        agent_uri: str | None,
        enabled: bool,
        heartbeats: Callable[[], Awaitable[Mapping[str, str]]],
        connections: Callable[[], int],
        draining: Callable[[], bool],
        interval_s: float,
        put: PutState = put_state,
        on_call: Callable[[Decision, AgentAnswer], None] | None = None,
    ) -> None:
        self.policy = policy
        self.agent_uri = agent_uri or None
        self.enabled = enabled
        self._heartbeats = heartbeats
        self._connections = connections
        self._draining = draining
        self.interval_s = interval_s
        self._put = put
        self._on_call = on_call
        self._lock = asyncio.Lock()
        self._failures_logged: set[str] = set()
        #: Every call made, as ``(monotonic time, decision, answer)`` (for tests and the audit log).
        self.calls: list[tuple[float, Decision, AgentAnswer]] = []

    @classmethod
    def agent_uri_from_env(cls, env: Mapping[str, str] | None = None) -> str | None:
        """``ECS_AGENT_URI`` from ``env`` (default: the process environment), or ``None``."""
        return (os.environ if env is None else env).get(ENV_ECS_AGENT_URI) or None

    @property
    def active(self) -> bool:
        """Whether this server takes part: the setting is on and the ECS agent is there."""
        return self.enabled and self.agent_uri is not None

    async def fleet(self) -> dict[str, FleetEntry] | None:
        """The live servers from the registry's heartbeats, or ``None`` when it cannot be read."""
        try:
            return read_fleet(await self._heartbeats())
        except Exception as exc:  # any registry failure: the fleet is unknown, protection lapses on its own
            self._log_failure("fleet", f"scale-in protection: cannot read the servers' heartbeats ({exc}); "
                              "protection is not renewed until they can be read")  # fmt: skip
            return None

    async def step(self) -> Decision:
        """One decision, and the call it asks for."""
        if not self.active:
            return Decision(Action.NONE, "inactive")
        async with self._lock:
            draining = self._draining()
            fleet = None if draining else await self.fleet()
            decision = self.policy.decide(self._connections(), fleet, draining=draining)
            await self._apply(decision)
            return decision

    async def loop(self) -> None:
        """:meth:`step` every ``interval_s`` until cancelled (never raises otherwise)."""
        while True:
            try:
                await self.step()
            except Exception as exc:  # the decision must never stop the server
                self._log_failure("step", f"scale-in protection: step failed ({exc}); trying again at the next beat")
            await asyncio.sleep(self.interval_s)

    async def release(self) -> Decision:
        """Draining: release now if protected, and never protect again (idempotent)."""
        if not self.active:
            return Decision(Action.NONE, "inactive")
        async with self._lock:
            decision = self.policy.decide(self._connections(), None, draining=True)
            await self._apply(decision)
            return decision

    async def shutdown(self, wait_s: float = SHUTDOWN_WAIT_S) -> Decision:
        """At shutdown: release if still protected (idempotent), waiting at most ``wait_s`` for the agent."""
        if not self.active:
            return Decision(Action.NONE, "inactive")
        try:
            async with asyncio.timeout(wait_s), self._lock:
                decision = self.policy.shutdown()
                await self._apply(decision)
                return decision
        except TimeoutError:
            log.warning("scale-in protection: no answer to the release within %g s at shutdown; it lapses", wait_s)
            return Decision(Action.NONE, "shutdown: the agent did not answer in time")

    async def _apply(self, decision: Decision) -> None:
        if decision.action is Action.NONE or self.agent_uri is None:
            return
        enabled = decision.action is Action.PROTECT
        expires = decision.expires_in_min if enabled else None
        answer = await asyncio.to_thread(self._put, self.agent_uri, enabled, expires)
        self.policy.record(decision, answer.ok)
        self.calls.append((time.monotonic(), decision, answer))
        if answer.ok:
            if self._failures_logged:
                log.info("scale-in protection: the ECS agent answers again")
                self._failures_logged.clear()
            log.info("scale-in protection: %s (%s): %s", decision.action.value, decision.reason, answer.detail)
        else:
            self._log_failure(
                "agent",
                f"scale-in protection: {decision.action.value} failed: {answer.detail}; check that the task role "
                "allows ecs:UpdateTaskProtection (trying again at the next beat)",
            )
        if self._on_call is not None:
            self._on_call(decision, answer)

    def _log_failure(self, kind: str, message: str) -> None:
        """Warn once per kind of failure until a call succeeds again; later repeats go to debug."""
        if kind in self._failures_logged:
            log.debug("%s", message)
            return
        self._failures_logged.add(kind)
        log.warning("%s", message)
