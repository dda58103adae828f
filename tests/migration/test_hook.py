"""The migration-hook Lambda against a real redis-server and moto's ECS."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from moto import mock_aws

from stickyws import migration_hook
from stickyws.keys import DRAIN_NOTICE_TTL_S, DrainNotice, drain_key, heartbeat_key
from stickyws.localproc import RedisServer
from stickyws.migration import DETAILS_KEY
from stickyws.server.upkeep import heartbeat_body
from stickyws.settings import ENV_REDIS_URL
from stickyws.testing.aws_env import REGION, fake_aws_environment

pytestmark = pytest.mark.redis

T0 = 1_767_222_000.0
CLUSTER = "sticky-cluster"
SERVICE = "sticky-service"
BLUE_DEPLOYMENT = "ecs-svc/1111111111111111111"
GREEN_REVISION = "2222222222222222222"
SERVICE_ARN = f"arn:aws:ecs:{REGION}:123456789012:service/{CLUSTER}/{SERVICE}"
REVISION_ARN = f"arn:aws:ecs:{REGION}:123456789012:service-revision/{CLUSTER}/{SERVICE}/{GREEN_REVISION}"


class FakeClock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now_s = T0

    def __call__(self) -> float:
        return self.now_s


def hook_event(details: dict[str, Any] | None = None, **execution: Any) -> dict[str, Any]:
    """A lifecycle-hook invocation at POST_PRODUCTION_TRAFFIC_SHIFT as ECS sends it."""
    body: dict[str, Any] = {
        "serviceArn": SERVICE_ARN,
        "targetServiceRevisionArn": REVISION_ARN,
        "testTrafficWeights": {},
        "productionTrafficWeights": {REVISION_ARN: 100},
    }
    body.update(execution)
    event: dict[str, Any] = {
        "executionDetails": body,
        "executionId": "exec-1",
        "lifecycleStage": "POST_PRODUCTION_TRAFFIC_SHIFT",
        "resourceArn": f"arn:aws:ecs:{REGION}:123456789012:service-deployment/{CLUSTER}/{SERVICE}/d1",
    }
    if details is not None:
        event["hookDetails"] = details
    return event


@pytest.fixture
def ecs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's ECS with one cluster and a task definition, in a fake AWS environment."""
    fake_aws_environment(monkeypatch)
    with mock_aws():
        import botocore.session

        client = botocore.session.get_session().create_client("ecs", region_name=REGION)
        client.create_cluster(clusterName=CLUSTER)
        containers = [{"name": "s", "image": "i", "memory": 512}]
        client.register_task_definition(family="sticky", containerDefinitions=containers)
        yield client


def run_tasks(ecs: Any, count: int, *, started_by: str, group: str = f"service:{SERVICE}") -> list[str]:
    """Start ``count`` tasks in moto; their task ids."""
    tasks = ecs.run_task(
        cluster=CLUSTER, taskDefinition="sticky", count=count, startedBy=started_by, group=group, launchType="FARGATE"
    )["tasks"]
    return [t["taskArn"].rsplit("/", 1)[-1] for t in tasks]


@pytest.fixture
def client(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """A client on the flushed shared redis-server; the hook's settings point at it."""
    monkeypatch.setenv(ENV_REDIS_URL, redis_url)
    monkeypatch.setenv(migration_hook.PACE_ENV, "10")
    monkeypatch.setenv(migration_hook.WINDOW_ENV, "600")
    monkeypatch.setenv(migration_hook.DRAIN_WINDOW_ENV, "60")
    monkeypatch.delenv(migration_hook.DONE_ENV, raising=False)
    conn = redis.Redis.from_url(redis_url, decode_responses=True)
    yield conn
    conn.close()


def beat(client: redis.Redis, counts: dict[str, int]) -> None:
    """Write each server's heartbeat as the reference server does."""
    for server_id, connections in counts.items():
        client.set(heartbeat_key(server_id), heartbeat_body(server_id, connections, "serving", 1), ex=60)


def noticed(client: redis.Redis) -> set[str]:
    """Server ids with a stored drain notice."""
    return {key.rsplit(":", 1)[-1] for key in client.scan_iter("ws:drain:*")}


@pytest.fixture
def fleet(ecs: Any, client: redis.Redis) -> dict[str, Any]:
    """Three blue tasks (small, mid, big), one green task, one task of another service; blue's heartbeats written."""
    small, mid, big = run_tasks(ecs, 3, started_by=BLUE_DEPLOYMENT)
    (green,) = run_tasks(ecs, 1, started_by=f"ecs-svc/{GREEN_REVISION}")
    (other,) = run_tasks(ecs, 1, started_by=BLUE_DEPLOYMENT, group="service:other-service")
    beat(client, {small: 60, mid: 300, big: 480, green: 50, other: 700})
    return {"small": small, "mid": mid, "big": big, "green": green, "other": other}


def test_first_call_notifies_only_the_due_blue_servers(client: redis.Redis, fleet: dict[str, Any]) -> None:
    """The first call drains the blue servers that fit the pace now, fewest connections first, and no other task."""
    pubsub = client.pubsub()
    pubsub.subscribe(drain_key(fleet["small"]))
    assert pubsub.get_message(timeout=1.0) is not None  # the subscribe confirmation

    response = migration_hook.handler(hook_event(), None, clock=FakeClock())

    # small (1/s) and mid (5/s) fit under 10/s together; big (8/s) waits for their windows to end.
    assert noticed(client) == {fleet["small"], fleet["mid"]}
    assert response["hookStatus"] == "IN_PROGRESS"
    assert response["callBackDelay"] == 30
    state = response["hookDetails"][DETAILS_KEY]
    assert state["startedAtMs"] == T0 * 1000
    assert sorted(state["sent"]) == sorted([[fleet["small"], T0 * 1000, 60], [fleet["mid"], T0 * 1000, 300]])

    stored = client.get(drain_key(fleet["small"]))
    assert stored is not None
    notice = DrainNotice.from_json(stored)
    assert notice.server_id == fleet["small"]
    assert notice.source == "ecs-deployment-migration"
    assert notice.reason == f"deployment to revision {GREEN_REVISION}"
    assert DRAIN_NOTICE_TTL_S - 5 <= client.ttl(drain_key(fleet["small"])) <= DRAIN_NOTICE_TTL_S
    deadline = time.monotonic() + 2.0
    message = None
    while message is None and time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
    assert message is not None
    assert message["data"] == stored
    pubsub.close()


def test_calls_follow_the_plan_until_blue_is_empty(client: redis.Redis, fleet: dict[str, Any]) -> None:
    """Later calls carry the state in hookDetails, drain the next server in its slot, and succeed once blue is empty."""
    clock = FakeClock()
    first = migration_hook.handler(hook_event(), None, clock=clock)
    assert first["hookStatus"] == "IN_PROGRESS"

    clock.now_s = T0 + 30
    beat(client, {fleet["small"]: 30, fleet["mid"]: 150})
    second = migration_hook.handler(hook_event(first["hookDetails"]), None, clock=clock)
    assert second["hookStatus"] == "IN_PROGRESS"
    assert fleet["big"] not in noticed(client)

    clock.now_s = T0 + 60
    beat(client, {fleet["small"]: 0, fleet["mid"]: 0})
    third = migration_hook.handler(hook_event(second["hookDetails"]), None, clock=clock)
    assert third["hookStatus"] == "IN_PROGRESS"
    assert noticed(client) == {fleet["small"], fleet["mid"], fleet["big"]}
    assert [s[0] for s in third["hookDetails"][DETAILS_KEY]["sent"]][-1] == fleet["big"]

    clock.now_s = T0 + 120
    beat(client, {fleet["big"]: 0})
    last = migration_hook.handler(hook_event(third["hookDetails"]), None, clock=clock)
    assert last["hookStatus"] == "SUCCEEDED"
    assert "callBackDelay" not in last
    assert fleet["green"] not in noticed(client)
    assert fleet["other"] not in noticed(client)


def test_no_green_task_means_no_notice(client: redis.Redis, ecs: Any) -> None:
    """When no task carries the target revision's deployment id, nothing is drained: blue cannot be told from green."""
    ids = run_tasks(ecs, 2, started_by=BLUE_DEPLOYMENT)
    beat(client, dict.fromkeys(ids, 100))

    response = migration_hook.handler(hook_event(), None, clock=FakeClock())

    assert response["hookStatus"] == "IN_PROGRESS"
    assert noticed(client) == set()


def test_registry_outage_waits_then_succeeds_at_window_end(
    ecs: Any, make_redis: Callable[[], RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the registry down the hook answers IN_PROGRESS, and SUCCEEDED once the window has ended."""
    run_tasks(ecs, 2, started_by=BLUE_DEPLOYMENT)
    run_tasks(ecs, 1, started_by=f"ecs-svc/{GREEN_REVISION}")
    server = make_redis()
    monkeypatch.setenv(ENV_REDIS_URL, server.url)
    monkeypatch.setenv(migration_hook.PACE_ENV, "10")
    monkeypatch.setenv(migration_hook.WINDOW_ENV, "600")
    monkeypatch.setenv(migration_hook.DRAIN_WINDOW_ENV, "60")
    server.stop()
    clock = FakeClock()

    first = migration_hook.handler(hook_event(), None, clock=clock)
    assert first["hookStatus"] == "IN_PROGRESS"
    assert first["callBackDelay"] == 30
    assert first["hookDetails"][DETAILS_KEY] == {"v": 1, "startedAtMs": T0 * 1000, "sent": []}

    clock.now_s = T0 + 600
    after = migration_hook.handler(hook_event(first["hookDetails"]), None, clock=clock)
    assert after["hookStatus"] == "SUCCEEDED"


def test_missing_registry_url_fails(ecs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without REDIS_URL the hook answers FAILED: it could never move a client."""
    run_tasks(ecs, 1, started_by=BLUE_DEPLOYMENT)
    run_tasks(ecs, 1, started_by=f"ecs-svc/{GREEN_REVISION}")
    monkeypatch.delenv(ENV_REDIS_URL, raising=False)
    monkeypatch.setenv(migration_hook.PACE_ENV, "10")
    monkeypatch.setenv(migration_hook.WINDOW_ENV, "600")
    monkeypatch.setenv(migration_hook.DRAIN_WINDOW_ENV, "60")

    assert migration_hook.handler(hook_event(), None, clock=FakeClock()) == {"hookStatus": "FAILED"}


@pytest.mark.parametrize(
    ("env", "event"),
    [
        ({migration_hook.PACE_ENV: ""}, hook_event()),
        ({migration_hook.PACE_ENV: "fast"}, hook_event()),
        ({}, hook_event(serviceArn="not-an-arn")),
        ({}, hook_event(targetServiceRevisionArn=None)),
        ({}, hook_event({DETAILS_KEY: {"v": 99}})),
    ],
)
def test_unusable_settings_or_event_fail(
    client: redis.Redis, ecs: Any, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], event: dict[str, Any]
) -> None:
    """A bad setting, an event without service or revision, or a foreign state answers FAILED and drains nothing."""
    ids = run_tasks(ecs, 1, started_by=BLUE_DEPLOYMENT)
    run_tasks(ecs, 1, started_by=f"ecs-svc/{GREEN_REVISION}")
    beat(client, dict.fromkeys(ids, 100))
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    response = migration_hook.handler(event, None, clock=FakeClock())

    assert response["hookStatus"] == "FAILED"
    assert noticed(client) == set()


def test_other_stages_do_nothing(client: redis.Redis, fleet: dict[str, Any]) -> None:
    """Installed at another stage the hook answers SUCCEEDED and drains nothing."""
    event = hook_event()
    event["lifecycleStage"] = "POST_SCALE_UP"

    assert migration_hook.handler(event, None, clock=FakeClock()) == {"hookStatus": "SUCCEEDED"}
    assert noticed(client) == set()


def test_parse_event_reads_cluster_service_and_revision() -> None:
    """Cluster, service, region and revision id come from the two ARNs; an old service ARN means the default cluster."""
    assert migration_hook.parse_event(hook_event()) == migration_hook.Target(REGION, CLUSTER, SERVICE, GREEN_REVISION)
    old = migration_hook.parse_event(hook_event(serviceArn=f"arn:aws:ecs:{REGION}:123456789012:service/{SERVICE}"))
    assert old == migration_hook.Target(REGION, "default", SERVICE, GREEN_REVISION)
    assert migration_hook.parse_event("x") == "event is a str, not an object"


def test_heartbeats_without_a_count_read_as_zero(client: redis.Redis) -> None:
    """A missing or unreadable heartbeat counts as no connections; a valid one gives its count."""
    client.set(heartbeat_key("good"), heartbeat_body("good", 7, "serving", 1))
    client.set(heartbeat_key("bad"), "not json")

    assert migration_hook.read_heartbeats(client, ["good", "bad", "gone"]) == {"good": 7, "bad": 0, "gone": 0}
    assert json.loads(heartbeat_body("x", 1, "serving", 1))["connections"] == 1


def test_unknown_cluster_fails(client: redis.Redis, ecs: Any) -> None:
    """ECS refusing the service's cluster answers FAILED: no retry would let the hook find blue."""
    arn = f"arn:aws:ecs:{REGION}:123456789012:service/no-such-cluster/{SERVICE}"

    assert migration_hook.handler(hook_event(serviceArn=arn), None, clock=FakeClock()) == {"hookStatus": "FAILED"}
    assert noticed(client) == set()


# -- rollback: PRODUCTION_TRAFFIC_SHIFT ---------------------------------------------------------------

BLUE_REVISION = "1111111111111111111"
BLUE_REVISION_ARN = f"arn:aws:ecs:{REGION}:123456789012:service-revision/{CLUSTER}/{SERVICE}/{BLUE_REVISION}"
ROLLBACK_DEPLOYMENT_ARN = f"arn:aws:ecs:{REGION}:123456789012:service-deployment/{CLUSTER}/{SERVICE}/rb1"


class DeploymentsOf:
    """moto's ECS client plus the two service-deployment calls moto lacks, answering with ``deployments``."""

    def __init__(self, ecs: Any, deployments: list[dict[str, Any]]) -> None:
        self.ecs = ecs
        self.deployments = deployments
        self.listed: list[dict[str, Any]] = []

    def __call__(self, _region: str) -> Any:
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ecs, name)

    def list_service_deployments(self, **kwargs: Any) -> dict[str, Any]:
        self.listed.append(kwargs)
        wanted = set(kwargs.get("status") or [])
        found = [d for d in self.deployments if not wanted or d["status"] in wanted]
        return {"serviceDeployments": [{"serviceDeploymentArn": d["serviceDeploymentArn"]} for d in found]}

    def describe_service_deployments(self, serviceDeploymentArns: list[str]) -> dict[str, Any]:
        return {
            "serviceDeployments": [d for d in self.deployments if d["serviceDeploymentArn"] in serviceDeploymentArns]
        }


def rolling_back(to: str = BLUE_REVISION_ARN) -> dict[str, Any]:
    """A service deployment that ECS is rolling back to revision ``to``."""
    return {
        "serviceDeploymentArn": ROLLBACK_DEPLOYMENT_ARN,
        "status": "ROLLBACK_IN_PROGRESS",
        "rollback": {"serviceRevisionArn": to},
    }


def shift_event(weights: dict[str, int], details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A call at PRODUCTION_TRAFFIC_SHIFT with these production weights."""
    event = hook_event(details, productionTrafficWeights=weights)
    event["lifecycleStage"] = "PRODUCTION_TRAFFIC_SHIFT"
    return event


@pytest.fixture
def green_fleet(ecs: Any, client: redis.Redis) -> dict[str, Any]:
    """Two blue tasks of revision 111..., two green tasks of revision 222...; every heartbeat written."""
    blue = run_tasks(ecs, 2, started_by=f"ecs-svc/{BLUE_REVISION}")
    few, many = run_tasks(ecs, 2, started_by=f"ecs-svc/{GREEN_REVISION}")
    beat(client, {blue[0]: 100, blue[1]: 100, few: 60, many: 300})
    return {"blue": set(blue), "few": few, "many": many}


def test_rollback_moves_greens_clients_back_to_blue(client: redis.Redis, ecs: Any, green_fleet: dict[str, Any]) -> None:
    """During a rollback whose weights put production back on blue's revision, the hook drains green's servers at the
    pace, with a rollback reason, and never blue's."""
    deployments = DeploymentsOf(ecs, [rolling_back()])

    response = migration_hook.handler(
        shift_event({BLUE_REVISION_ARN: 100, REVISION_ARN: 0}), None, clock=FakeClock(), ecs_client=deployments
    )

    assert response["hookStatus"] == "IN_PROGRESS"
    assert noticed(client) == {green_fleet["few"], green_fleet["many"]}
    notice = DrainNotice.from_json(client.get(drain_key(green_fleet["few"])) or "")
    assert notice.reason == f"rollback to revision {BLUE_REVISION}"
    assert deployments.listed == [{"cluster": CLUSTER, "service": SERVICE, "status": ["ROLLBACK_IN_PROGRESS"]}]


@pytest.mark.parametrize(
    ("weights", "deployments"),
    [
        ({BLUE_REVISION_ARN: 100, REVISION_ARN: 0}, []),
        ({REVISION_ARN: 100}, []),
        ({BLUE_REVISION_ARN: 50, REVISION_ARN: 50}, [rolling_back()]),
        ({REVISION_ARN: 100, BLUE_REVISION_ARN: 0}, [rolling_back()]),
    ],
    ids=["forward-before-shift", "forward-after-shift", "rollback-split", "rollback-not-yet-back"],
)
def test_production_shift_without_a_completed_rollback_does_nothing(
    client: redis.Redis,
    ecs: Any,
    green_fleet: dict[str, Any],
    weights: dict[str, int],
    deployments: list[dict[str, Any]],
) -> None:
    """At PRODUCTION_TRAFFIC_SHIFT the hook answers SUCCEEDED and drains nothing unless a rollback is in progress and
    the weights already put all production on the revision it deploys."""
    response = migration_hook.handler(
        shift_event(weights), None, clock=FakeClock(), ecs_client=DeploymentsOf(ecs, deployments)
    )

    assert response == {"hookStatus": "SUCCEEDED"}
    assert noticed(client) == set()


def test_unreadable_deployments_never_hold_a_production_shift(
    client: redis.Redis, ecs: Any, green_fleet: dict[str, Any]
) -> None:
    """When ECS refuses ListServiceDeployments the shift goes on (SUCCEEDED) and nothing is drained."""
    from botocore.exceptions import ClientError

    class Refusing(DeploymentsOf):
        def list_service_deployments(self, **kwargs: Any) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "ListServiceDeployments")

    response = migration_hook.handler(
        shift_event({BLUE_REVISION_ARN: 100}), None, clock=FakeClock(), ecs_client=Refusing(ecs, [rolling_back()])
    )

    assert response == {"hookStatus": "SUCCEEDED"}
    assert noticed(client) == set()


def test_production_revision_reads_the_whole_weight_only() -> None:
    """The revision holding 100 % of production is found in executionDetails; split or missing weights give none."""
    assert migration_hook.production_revision(shift_event({BLUE_REVISION_ARN: 100, REVISION_ARN: 0})) == (
        BLUE_REVISION_ARN
    )
    assert migration_hook.production_revision(shift_event({BLUE_REVISION_ARN: 90, REVISION_ARN: 10})) is None
    assert migration_hook.production_revision({"executionDetails": {}}) is None
    assert migration_hook.STAGES == ("POST_PRODUCTION_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT")


def test_rollback_stage_never_fails(client: redis.Redis, ecs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """At PRODUCTION_TRAFFIC_SHIFT an event without a service, or a rollback with an unusable setting, answers
    SUCCEEDED (logged) instead of FAILED, and drains nothing."""
    broken = shift_event({BLUE_REVISION_ARN: 100})
    broken["executionDetails"]["serviceArn"] = "not-an-arn"
    assert migration_hook.handler(broken, None, clock=FakeClock()) == {"hookStatus": "SUCCEEDED"}

    run_tasks(ecs, 1, started_by=f"ecs-svc/{GREEN_REVISION}")
    monkeypatch.setenv(migration_hook.PACE_ENV, "fast")
    response = migration_hook.handler(
        shift_event({BLUE_REVISION_ARN: 100}), None, clock=FakeClock(), ecs_client=DeploymentsOf(ecs, [rolling_back()])
    )
    assert response == {"hookStatus": "SUCCEEDED"}
    assert noticed(client) == set()
