"""The migration-hook Lambda: at ``POST_PRODUCTION_TRAFFIC_SHIFT``, drain blue's servers at a fleet-wide pace.

ECS calls this function as a deployment lifecycle hook and calls it again after ``callBackDelay``
seconds for as long as it answers ``IN_PROGRESS``, handing back the ``hookDetails`` it returned.
On each call it:

1. reads the service and the target (green) service revision from the event
   (``executionDetails.serviceArn`` and ``executionDetails.targetServiceRevisionArn``; the same
   names at the top level are read too);
2. finds blue's tasks: the service's running tasks (``ListTasks`` by service name, then
   ``DescribeTasks``, keeping those whose ``group`` is ``service:<name>``) that are not green's. A
   task is green's when its ``startedBy`` is ``ecs-svc/<revision id>``, the last segment of the
   target revision's ARN (ECS tags a service's tasks with the deployment id). The server id is the
   task id, as for the drain notifier. When no task is recognised as green's, no notice is written:
   telling green to drain would refuse every new client;
3. reads those servers' heartbeats (``ws:server:<serverId>:heartbeat``, the ``connections`` field)
   from the registry; a server without a readable heartbeat counts as holding none;
4. asks :func:`stickyws.migration.decide` which notices are due and what to answer, writes the due
   notices exactly as the drain notifier does (:func:`stickyws.drain_notifier.publish`: ``SET ...
   EX DRAIN_NOTICE_TTL_S`` and ``PUBLISH``, source :data:`SOURCE`), and returns
   ``{"hookStatus", "callBackDelay", "hookDetails"}``.

Failures: a missing or invalid setting, credentials the registry or ECS refuse, or an event without
the service or the revision answer ``FAILED`` with the reason in the log (ECS rolls the deployment
back: answering ``SUCCEEDED`` would leave every blue client to be cut at cleanup, unmoved, on every
deployment). A registry or ECS outage answers ``IN_PROGRESS`` until the window ends, then
``SUCCEEDED``. Every answer is logged as one line with the note that explains it.

**Rollback.** What the ECS documentation says (verified, Amazon ECS developer guide, "Lifecycle hooks for
Amazon ECS service deployments"): when a deployment rolls back, ECS runs the lifecycle hooks of two stages,
``PRODUCTION_TRAFFIC_SHIFT`` and ``TEST_TRAFFIC_SHIFT``; a hook at ``POST_PRODUCTION_TRAFFIC_SHIFT`` is not
run again, with roles swapped or otherwise. Every hook payload carries ``productionTrafficWeights`` (service
revision ARN -> percent of production traffic), and ECS's API shows a deployment being rolled back as status
``ROLLBACK_IN_PROGRESS`` with ``rollback.serviceRevisionArn``, "the service revision deployed as part of the
rollback" (``ListServiceDeployments``, ``DescribeServiceDeployments``). So the hook is also installed at
:data:`ROLLBACK_STAGE` and there acts only when all three agree (:func:`rollback_target`): the weights put
100 % of production on one revision, a deployment of the service is ``ROLLBACK_IN_PROGRESS``, and that
rollback deploys that same revision. It then moves green's clients back exactly as above, with that
revision in the target's place: the "blue" of a rollback is every running task not started by the revision
production now points to (the green tasks), and its notices say ``rollback to revision <id>``. In every
other case at that stage (a forward shift, weights still split, a rollback still shifting, or the
deployments unreadable) it answers ``SUCCEEDED`` and writes nothing, so a forward shift is never held and
green is never told to drain while production still goes to it. Nor does it ever answer ``FAILED`` there (a bad
setting or event is logged and answered ``SUCCEEDED``): what a failed hook does to a rollback is not
documented.

Inferred, not seen on a live account: whether the weights in the payload of the rollback's
``PRODUCTION_TRAFFIC_SHIFT`` call already point back to blue (the hook acts only when they
do; if ECS moves them only after the stage, the rollback moves nothing, as before); that blue's tasks
carry ``startedBy`` ``ecs-svc/<id>`` of their own revision as green's do of theirs. And a limit: blue's
servers that the forward migration already told to drain stay drained (a drain is not undone), so after a
completed migration a rollback sends its clients to servers that refuse new handshakes.

Settings (environment): ``REDIS_URL`` and the ``REDIS_AUTH`` family as for the drain notifier
(:mod:`stickyws.registry_auth`); :data:`PACE_ENV`, :data:`WINDOW_ENV`, :data:`DRAIN_WINDOW_ENV`,
and optionally :data:`DONE_ENV`.

Like the drain notifier's bundle (``constructs_lib/bundling.py``), this module needs only
``stickyws/__init__.py``, ``stickyws/keys.py``, ``stickyws/registry_auth.py``,
``stickyws/drain_notifier.py``, ``stickyws/migration.py``, itself, redis-py and botocore (part of
the Lambda runtime); it imports nothing else from stickyws.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import redis

from stickyws import drain_notifier
from stickyws.keys import DrainNotice, heartbeat_key
from stickyws.migration import Decision, Migration, MigrationConfig, MigrationState, decide
from stickyws.registry_auth import RegistryAuthError

log = logging.getLogger("stickyws.migration_hook")

#: Reconnects per second the migration may cause across the fleet (setting ``migration_pace_per_s``; this
#: module carries the settings' variable names itself, since the Lambda's bundle has no settings package).
PACE_ENV: Final = "STICKYWS_MIGRATION_PACE_PER_S"
#: Seconds from the hook's first call after which it answers SUCCEEDED whatever is left on blue
#: (setting ``migration_window_s``).
WINDOW_ENV: Final = "STICKYWS_MIGRATION_WINDOW_S"
#: The servers' drain window (the ``drain_window_s`` setting's variable).
DRAIN_WINDOW_ENV: Final = "STICKYWS_DRAIN_WINDOW_S"
#: Blue counts as empty at or under this many connections (setting ``migration_done_connections``, default 0).
DONE_ENV: Final = "STICKYWS_MIGRATION_DONE_CONNECTIONS"
#: ``DrainNotice.source`` of every notice this hook writes.
SOURCE: Final = "ecs-deployment-migration"
#: The stage this hook moves blue's clients at (the production shift to green is complete).
STAGE: Final = "POST_PRODUCTION_TRAFFIC_SHIFT"
#: The stage a rollback runs hooks at; the hook moves green's clients back there during a rollback only.
ROLLBACK_STAGE: Final = "PRODUCTION_TRAFFIC_SHIFT"
#: Every stage the hook is installed at; at any other stage it answers SUCCEEDED and does nothing.
STAGES: Final = (STAGE, ROLLBACK_STAGE)
#: ECS's status of a service deployment that is being rolled back.
ROLLBACK_IN_PROGRESS: Final = "ROLLBACK_IN_PROGRESS"
#: botocore's timeouts (s) and attempts for ECS calls: a slow call ends this invocation as IN_PROGRESS long before
#: the function's own timeout, which ECS would take as a failure and roll the deployment back.
ECS_CONNECT_TIMEOUT_S: Final = 5
ECS_READ_TIMEOUT_S: Final = 15
ECS_MAX_ATTEMPTS: Final = 3
#: ``DescribeTasks`` takes at most this many tasks per call.
DESCRIBE_BATCH: Final = 100
#: ECS error codes that no retry cures: the hook answers FAILED on them.
PERMANENT_ECS_ERRORS: Final = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "ClusterNotFoundException",
        "ServiceNotFoundException",
        "InvalidParameterException",
        "UnrecognizedClientException",
    }
)


class HookFailure(RuntimeError):
    """The hook cannot work as configured; the message says what to fix. Answered as ``FAILED``."""


class Unavailable(RuntimeError):
    """The registry or ECS could not be reached this call; the message says which. Answered as ``IN_PROGRESS``."""


@dataclass(frozen=True)
class Target:
    """The service being deployed and its target (green) revision, from the hook event.

    ``rollback``: the revision is the one a rollback deploys, and the tasks to move are green's.
    """

    region: str
    cluster: str
    service_name: str
    revision_id: str
    rollback: bool = False

    @property
    def reason(self) -> str:
        """``DrainNotice.reason`` of this target's notices."""
        return f"{'rollback' if self.rollback else 'deployment'} to revision {self.revision_id}"


@dataclass(frozen=True)
class Fleet:
    """The service's running tasks, split: blue's task ids and how many are green's."""

    blue: tuple[str, ...]
    green_count: int


def parse_event(event: Any) -> Target | str:
    """The service and target revision ``event`` names, or why it names none (pure).

    ``serviceArn`` is ``arn:aws:ecs:<region>:<account>:service/<cluster>/<name>`` (the old
    ``service/<name>`` form means the ``default`` cluster); the revision id is the last segment of
    ``targetServiceRevisionArn``.
    """
    if not isinstance(event, Mapping):
        return f"event is a {type(event).__name__}, not an object"
    details = event.get("executionDetails")
    source: Mapping[str, Any] = details if isinstance(details, Mapping) else event
    service_arn = source.get("serviceArn", event.get("serviceArn"))
    revision_arn = source.get("targetServiceRevisionArn", event.get("targetServiceRevisionArn"))
    if not isinstance(service_arn, str) or not service_arn.startswith("arn:") or ":service/" not in service_arn:
        return f"executionDetails.serviceArn {service_arn!r} is not an ECS service ARN"
    if not isinstance(revision_arn, str) or ":service-revision/" not in revision_arn:
        return f"executionDetails.targetServiceRevisionArn {revision_arn!r} is not an ECS service revision ARN"
    region = service_arn.split(":")[3]
    path = service_arn.split(":service/", 1)[1].split("/")
    cluster, name = (path[0], path[1]) if len(path) >= 2 else ("default", path[0])
    revision_id = revision_arn.rsplit("/", 1)[-1]
    if not (region and cluster and name and revision_id):
        return f"cannot read region, cluster, service and revision from {service_arn!r} and {revision_arn!r}"
    return Target(region=region, cluster=cluster, service_name=name, revision_id=revision_id)


def config_from_env(env: Mapping[str, str]) -> MigrationConfig:
    """The migration settings in ``env``; raises :class:`HookFailure` naming a missing or bad variable."""

    def number(name: str, default: str | None = None) -> float:
        raw = env.get(name, default)
        if raw is None or raw == "":
            raise HookFailure(f"{name} is not set: give the function its value (see docs/deployments.md)")
        try:
            return float(raw)
        except ValueError:
            raise HookFailure(f"{name}={raw!r} is not a number") from None

    try:
        return MigrationConfig(
            pace_per_s=number(PACE_ENV),
            window_s=number(WINDOW_ENV),
            drain_window_s=number(DRAIN_WINDOW_ENV),
            done_connections=int(number(DONE_ENV, "0")),
        )
    except ValueError as exc:
        raise HookFailure(str(exc)) from None


def split_fleet(tasks: Iterable[Mapping[str, Any]], target: Target) -> Fleet:
    """Blue's task ids among ``tasks`` (``DescribeTasks`` entries) and the number of green's (pure).

    Kept: tasks of group ``service:<name>`` that are not stopping. Green's: ``startedBy`` is
    ``ecs-svc/<revision id>``.
    """
    group = f"service:{target.service_name}"
    green_tag = f"ecs-svc/{target.revision_id}"
    blue: list[str] = []
    green = 0
    for task in tasks:
        if task.get("group") != group or task.get("desiredStatus", "RUNNING") != "RUNNING":
            continue
        if task.get("startedBy") == green_tag:
            green += 1
        else:
            blue.append(str(task["taskArn"]).rsplit("/", 1)[-1])
    return Fleet(blue=tuple(sorted(blue)), green_count=green)


def list_service_tasks(ecs: Any, target: Target) -> list[dict[str, Any]]:
    """``DescribeTasks`` of every running task ``ListTasks`` names for the service (all pages)."""
    arns: list[str] = []
    kwargs: dict[str, Any] = {"cluster": target.cluster, "serviceName": target.service_name, "desiredStatus": "RUNNING"}
    while True:
        page = ecs.list_tasks(**kwargs)
        arns.extend(page.get("taskArns", []))
        token = page.get("nextToken")
        if not token:
            break
        kwargs["nextToken"] = token
    tasks: list[dict[str, Any]] = []
    for start in range(0, len(arns), DESCRIBE_BATCH):
        tasks.extend(ecs.describe_tasks(cluster=target.cluster, tasks=arns[start : start + DESCRIBE_BATCH])["tasks"])
    return tasks


def connections_from(raw: bytes | str | None) -> int:
    """The ``connections`` of a heartbeat value; 0 for a missing or unreadable one."""
    if raw is None:
        return 0
    try:
        body = json.loads(raw)
        return max(int(body.get("connections", 0)), 0)
    except (ValueError, TypeError, AttributeError):
        return 0


def read_heartbeats(client: redis.Redis | redis.RedisCluster, server_ids: Iterable[str]) -> dict[str, int]:
    """Server id -> connections its heartbeat reports (0 without one). Raises :class:`redis.RedisError`."""
    ids = list(server_ids)
    if not ids:
        return {}
    keys = [heartbeat_key(sid) for sid in ids]
    values = client.mget_nonatomic(keys) if isinstance(client, redis.RedisCluster) else client.mget(keys)
    return {sid: connections_from(raw) for sid, raw in zip(ids, values, strict=True)}


def _ecs_client(region: str) -> Any:
    import botocore.config
    import botocore.session

    config = botocore.config.Config(
        connect_timeout=ECS_CONNECT_TIMEOUT_S,
        read_timeout=ECS_READ_TIMEOUT_S,
        retries={"max_attempts": ECS_MAX_ATTEMPTS, "mode": "standard"},
    )
    return botocore.session.get_session().create_client("ecs", region_name=region, config=config)


def production_revision(event: Any) -> str | None:
    """The service revision ARN that ``event``'s ``productionTrafficWeights`` give 100 %, else ``None`` (pure)."""
    if not isinstance(event, Mapping):
        return None
    details = event.get("executionDetails")
    source: Mapping[str, Any] = details if isinstance(details, Mapping) else event
    weights = source.get("productionTrafficWeights", event.get("productionTrafficWeights"))
    if not isinstance(weights, Mapping):
        return None
    whole = [str(arn) for arn, weight in weights.items() if isinstance(weight, (int, float)) and weight >= 100]
    return whole[0] if len(whole) == 1 else None


def rollback_revision(ecs: Any, target: Target) -> str | None:
    """The ARN of the revision a rollback of ``target``'s service deploys (a ``ROLLBACK_IN_PROGRESS`` deployment's
    ``rollback.serviceRevisionArn``), else ``None``. Raises botocore's errors."""
    listed = ecs.list_service_deployments(
        cluster=target.cluster, service=target.service_name, status=[ROLLBACK_IN_PROGRESS]
    )
    deployments = listed.get("serviceDeployments", [])
    arns = [str(d["serviceDeploymentArn"]) for d in deployments if d.get("serviceDeploymentArn")]
    if not arns:
        return None
    described = ecs.describe_service_deployments(serviceDeploymentArns=arns[:1]).get("serviceDeployments", [])
    revision = (described[0].get("rollback") or {}).get("serviceRevisionArn") if described else None
    return str(revision) if revision else None


def rollback_target(event: Any, target: Target, ecs_client: Callable[[str], Any] = _ecs_client) -> Target | str:
    """At :data:`ROLLBACK_STAGE`: ``target`` with the revision a rollback has sent production back to, or why
    there is nothing to move (see "Rollback" in the module docstring)."""
    import botocore.exceptions

    production = production_revision(event)
    if production is None:
        return "production traffic is not wholly on one revision: nothing to move"
    try:
        back_to = rollback_revision(ecs_client(target.region), target)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        return (
            f"cannot read the deployments of service {target.service_name} ({type(exc).__name__}: {exc}): nothing "
            "moved; the function's role needs ecs:ListServiceDeployments and ecs:DescribeServiceDeployments"
        )
    if back_to is None:
        return "no deployment of the service is rolling back (a forward traffic shift): nothing to move"
    if back_to != production:
        return f"the rollback deploys {back_to} while production is on {production}: nothing moved"
    return replace(target, revision_id=back_to.rsplit("/", 1)[-1], rollback=True)


def find_fleet(target: Target, ecs_client: Callable[[str], Any] = _ecs_client) -> Fleet:
    """Blue and green of ``target``'s service; :class:`HookFailure` or :class:`Unavailable` on ECS errors."""
    import botocore.exceptions

    try:
        return split_fleet(list_service_tasks(ecs_client(target.region), target), target)
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in PERMANENT_ECS_ERRORS:
            raise HookFailure(
                f"ECS refused to list the tasks of service {target.service_name} in cluster {target.cluster} "
                f"({code}: {exc}): check the cluster and service, and that the function's role may "
                "ecs:ListTasks and ecs:DescribeTasks"
            ) from None
        raise Unavailable(f"ECS could not list the service's tasks ({code}: {exc})") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise Unavailable(f"ECS could not be reached ({type(exc).__name__}: {exc})") from None


def registry_client() -> redis.Redis | redis.RedisCluster:
    """The registry client the drain notifier uses (same URL, auth and reuse); :class:`HookFailure` when unset."""
    url = os.environ.get(drain_notifier.REDIS_URL_ENV, "")
    if not url:
        raise HookFailure(
            f"{drain_notifier.REDIS_URL_ENV} is not set: give the function the registry URL (rediss://host:port)"
        )
    try:
        return drain_notifier._redis(url)
    except RegistryAuthError as exc:
        raise HookFailure(f"cannot authenticate to the registry at {drain_notifier.redact(url)}: {exc}") from None
    except redis.AuthenticationError as exc:
        raise HookFailure(_refused(url, exc)) from None
    except redis.RedisError as exc:
        raise Unavailable(f"registry at {drain_notifier.redact(url)}: {type(exc).__name__}: {exc}") from None


def _refused(url: str, exc: Exception) -> str:
    return (
        f"the registry at {drain_notifier.redact(url)} refused this function's credentials ({exc}): check that "
        "the function's role may elasticache:Connect to the cache and its user"
    )


def failed(reason: str, details: Any) -> dict[str, Any]:
    """A ``FAILED`` answer; the reason goes to the log (ECS shows the hook's status, not its text)."""
    log.error(json.dumps({"hookStatus": "FAILED", "note": reason}))
    response: dict[str, Any] = {"hookStatus": "FAILED"}
    if isinstance(details, Mapping):
        response["hookDetails"] = dict(details)
    return response


def handler(
    event: Any,
    context: Any = None,
    *,
    clock: Callable[[], float] | None = None,
    ecs_client: Callable[[str], Any] = _ecs_client,
) -> dict[str, Any]:
    """Lambda entry point: one call of the lifecycle hook (see the module docstring). Never raises.

    At :data:`ROLLBACK_STAGE` it never answers ``FAILED``: what a failed hook does to a rollback is not
    documented, and a forward shift must not be failed by the rollback check; the reason is logged and the
    answer is ``SUCCEEDED``.
    """
    response = _handle(event, clock=clock, ecs_client=ecs_client)
    stage = event.get("lifecycleStage") if isinstance(event, Mapping) else None
    if stage == ROLLBACK_STAGE and response.get("hookStatus") == "FAILED":
        log.error(json.dumps({"hookStatus": "SUCCEEDED", "note": f"stage {stage}: the failure above moves nothing"}))
        return {"hookStatus": "SUCCEEDED"}
    return response


def _handle(event: Any, *, clock: Callable[[], float] | None, ecs_client: Callable[[str], Any]) -> dict[str, Any]:
    details = event.get("hookDetails") if isinstance(event, Mapping) else None
    stage = event.get("lifecycleStage") if isinstance(event, Mapping) else None
    if stage not in (None, *STAGES):
        log.info(json.dumps({"hookStatus": "SUCCEEDED", "note": f"stage {stage}: nothing to do"}))
        return {"hookStatus": "SUCCEEDED"}
    target = parse_event(event)
    if isinstance(target, str):
        return failed(f"cannot tell which service to migrate: {target}", details)
    if stage == ROLLBACK_STAGE:
        rolled = rollback_target(event, target, ecs_client)
        if isinstance(rolled, str):
            log.info(json.dumps({"hookStatus": "SUCCEEDED", "note": f"stage {stage}: {rolled}"}))
            return {"hookStatus": "SUCCEEDED"}
        target = rolled
    try:
        config = config_from_env(os.environ)
        migration = Migration(config) if clock is None else Migration(config, clock=clock)
        state = MigrationState.from_details(details)
    except HookFailure as exc:
        return failed(str(exc), details)
    except ValueError as exc:
        return failed(str(exc), details)
    now_s = migration.now()
    try:
        decision = _step(config, state, target, now_s, ecs_client)
    except HookFailure as exc:
        return failed(str(exc), details)
    log.info(
        json.dumps(
            {
                "hookStatus": decision.status,
                "note": decision.note,
                "blueConnections": decision.blue_connections,
                "notices": [s.server_id for s in decision.notices],
                "plan": [[s.server_id, round(s.at_s - now_s, 1), s.connections, s.over_pace] for s in decision.plan],
            }
        )
    )
    return decision.hook_response(details if isinstance(details, Mapping) else None)


def _step(
    config: MigrationConfig,
    state: MigrationState | None,
    target: Target,
    now_s: float,
    ecs_client: Callable[[str], Any],
) -> Decision:
    """Read ECS and the registry, decide, write the due notices; :class:`HookFailure` for what must fail."""
    try:
        fleet = find_fleet(target, ecs_client)
        if fleet.green_count == 0:
            unknown = decide(config, state, None, now_s=now_s)
            return replace(
                unknown,
                note=f"no running task of service {target.service_name} was started by ecs-svc/{target.revision_id} "
                "(the target revision): blue cannot be told from green, so no notice is written"
                + ("; the window has ended" if unknown.status == "SUCCEEDED" else ""),
            )
        client = registry_client()
        blue = read_heartbeats(client, fleet.blue)
    except Unavailable as exc:
        unknown = decide(config, state, None, now_s=now_s)
        return replace(unknown, note=f"{exc}; {unknown.note}")
    except redis.AuthenticationError as exc:
        raise HookFailure(_refused(os.environ.get(drain_notifier.REDIS_URL_ENV, ""), exc)) from None
    except redis.RedisError as exc:
        unknown = decide(config, state, None, now_s=now_s)
        return replace(unknown, note=f"{type(exc).__name__}: {exc}; {unknown.note}")
    decision = decide(config, state, blue, now_s=now_s)
    written: set[str] = set()
    for slot in decision.notices:
        notice = DrainNotice(server_id=slot.server_id, source=SOURCE, reason=target.reason)
        try:
            drain_notifier.publish(client, notice)
        except redis.RedisError as exc:
            before = state if state is not None else MigrationState(started_at_s=now_s)
            partial = before.with_sent(s for s in decision.state.sent if s.server_id in written)
            unknown = decide(config, partial, None, now_s=now_s)
            return replace(
                unknown, note=f"writing the drain notice for {slot.server_id} failed ({exc}); {unknown.note}"
            )
        written.add(slot.server_id)
    return decision
