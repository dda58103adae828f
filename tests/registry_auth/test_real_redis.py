"""The registry credential providers authenticate to a real redis-server with ACL users (and fail when wrong)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from stickyws import drain_notifier
from stickyws.registry.redis_registry import RedisRegistry
from stickyws.registry_auth import IamAuthTokenProvider, credential_provider_from_env
from tests.drain_notifier.test_handler import TASK_ID, ecs_event
from tests.registry_auth.test_tokens import CREDS, FakeClock

pytestmark = pytest.mark.redis

USER = "stickyws-svc"


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    """An unauthenticated (default user) client on the flushed shared server; deletes the test's ACL user after."""
    conn = redis.Redis.from_url(redis_url, decode_responses=True)
    yield conn
    conn.acl_deluser(USER)
    conn.close()


def set_password(admin: redis.Redis, password: str) -> None:
    """Make USER an enabled user whose only password is ``password`` (what ElastiCache does with a valid token)."""
    admin.acl_setuser(USER, enabled=True, reset_passwords=True, passwords=[f"+{password}"], keys=["*"],
                      channels=["*"], commands=["+@all"])  # fmt: skip


def test_iam_token_provider_authenticates_and_refreshes(redis_url: str, admin: redis.Redis) -> None:
    """A connection AUTHs as (user id, current token); after the refresh a new connection presents the new token."""
    clock = FakeClock()
    provider = IamAuthTokenProvider(
        user_id=USER, cache_name="reg", region="eu-west-1", credentials=lambda: CREDS, clock=clock
    )
    set_password(admin, provider.token())
    conn = redis.Redis.from_url(redis_url, credential_provider=provider)
    assert conn.acl_whoami() == USER
    conn.close()

    clock.now += 600  # the next connection signs a fresh token, which the server does not know yet
    refused = redis.Redis.from_url(redis_url, credential_provider=provider)
    with pytest.raises(redis.AuthenticationError):
        refused.ping()
    refused.close()
    set_password(admin, provider.token())
    again = redis.Redis.from_url(redis_url, credential_provider=provider)
    assert again.acl_whoami() == USER
    again.close()


def test_redis_registry_takes_the_provider(redis_url: str, admin: redis.Redis) -> None:
    """RedisRegistry(credential_provider=...) authenticates its pooled connections as the RBAC user."""
    provider = credential_provider_from_env({"REDIS_AUTH": "token", "REDIS_USER": USER, "REDIS_PASSWORD": "s3cret-pw"})
    set_password(admin, "s3cret-pw")
    before = {c["id"] for c in admin.client_list()}

    async def use() -> list[str]:
        registry = RedisRegistry(redis_url, credential_provider=provider)
        try:
            await registry.heartbeat("srv-auth", "{}", 30)
            return [c["user"] for c in admin.client_list() if c["id"] not in before and c["user"] != "default"]
        finally:
            await registry.close()

    users = asyncio.run(use())
    assert users == [USER]
    assert admin.get("ws:server:srv-auth:heartbeat") == "{}"


def test_wrong_password_is_refused(redis_url: str, admin: redis.Redis) -> None:
    """A token-mode provider with the wrong password gets AuthenticationError from the server."""
    set_password(admin, "right")
    provider = credential_provider_from_env({"REDIS_AUTH": "token", "REDIS_USER": USER, "REDIS_PASSWORD": "wrong"})
    conn = redis.Redis.from_url(redis_url, credential_provider=provider)
    with pytest.raises(redis.AuthenticationError):
        conn.ping()
    conn.close()


def test_drain_notifier_authenticates_from_its_environment(
    redis_url: str, admin: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With REDIS_AUTH=token the Lambda writes its notice as the RBAC user; a wrong password is a clear error."""
    set_password(admin, "lambda-pw")
    admin.acl_setuser("default", enabled=False)  # only the RBAC user may write now
    try:
        for name, value in {"REDIS_URL": redis_url, "REDIS_AUTH": "token", "REDIS_USER": USER}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("REDIS_PASSWORD", "not-it")
        with pytest.raises(drain_notifier.DrainNotifyError, match="refused this function's credentials"):
            drain_notifier.handler(ecs_event(), None)
        monkeypatch.setenv("REDIS_PASSWORD", "lambda-pw")
        assert drain_notifier.handler(ecs_event(), None)["status"] == "published"
    finally:
        admin.acl_setuser("default", enabled=True)
    assert admin.exists(f"ws:drain:{TASK_ID}") == 1
