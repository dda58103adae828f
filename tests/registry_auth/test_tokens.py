"""IAM auth tokens and passwords for the registry: signed deterministically, refreshed, read from the environment."""

from __future__ import annotations

import datetime
import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from botocore.credentials import Credentials

from stickyws import registry_auth
from stickyws.registry_auth import (
    IamAuthTokenProvider,
    RegistryAuthError,
    credential_provider_from_env,
    password_from_secret,
    presign_connect,
)

NOW = datetime.datetime(2026, 12, 1, 12, 30, 5, tzinfo=datetime.UTC)
CREDS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "session/token+1")


def reference_signature(host: str, params: dict[str, str], secret: str, region: str, stamp: str) -> str:
    """SigV4 of a presigned GET written out from the AWS specification (independent of botocore)."""
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
    canonical = "\n".join(["GET", "/", query, f"host:{host}", "", "host", hashlib.sha256(b"").hexdigest()])
    scope = f"{stamp[:8]}/{region}/elasticache/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (stamp[:8], region, "elasticache", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def split_token(token: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit("http://" + token)
    assert parts.path == "/"
    return parts.netloc, dict(parse_qsl(parts.query, keep_blank_values=True))


@pytest.mark.parametrize("serverless", [False, True])
def test_token_is_a_sigv4_presigned_connect_request(serverless: bool) -> None:
    """The token is cache/?Action=connect&User=... presigned for elasticache, 900 s, at the given time, signed right."""
    token = presign_connect(
        cache_name="stickyws-reg", user_id="stickyws-svc", region="eu-west-1", credentials=CREDS, now=NOW,
        serverless=serverless,
    )  # fmt: skip
    assert not token.startswith("http")
    host, params = split_token(token)
    assert host == "stickyws-reg"
    signature = params.pop("X-Amz-Signature")
    expected = {
        "Action": "connect",
        "User": "stickyws-svc",
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": "AKIDEXAMPLE/20261201/eu-west-1/elasticache/aws4_request",
        "X-Amz-Date": "20261201T123005Z",
        "X-Amz-Expires": "900",
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Security-Token": "session/token+1",
    }
    if serverless:
        expected["ResourceType"] = "ServerlessCache"
    assert params == expected
    assert signature == reference_signature(host, params, CREDS.secret_key, "eu-west-1", "20261201T123005Z")


class FakeClock:
    def __init__(self) -> None:
        self.now = NOW.timestamp()

    def __call__(self) -> float:
        return self.now


def test_provider_reuses_a_token_then_signs_a_fresh_one() -> None:
    """The provider returns (user id, token), keeps it for 600 s and re-signs with the clock's new time after that."""
    clock, calls = FakeClock(), []

    def creds() -> Any:
        calls.append(1)
        return CREDS

    provider = IamAuthTokenProvider(user_id="svc", cache_name="reg", region="us-east-1", credentials=creds, clock=clock)
    user, first = provider.get_credentials()
    assert user == "svc"
    clock.now += 599
    assert provider.get_credentials() == ("svc", first)
    assert len(calls) == 1
    clock.now += 1
    _, second = provider.get_credentials()
    assert second != first
    assert split_token(second)[1]["X-Amz-Date"] == "20261201T124005Z"
    assert len(calls) == 2


def test_provider_without_aws_credentials_says_what_to_do() -> None:
    """No AWS credentials: a RegistryAuthError that names the role to grant, not a botocore traceback."""
    provider = IamAuthTokenProvider(user_id="svc", cache_name="reg", region="us-east-1", credentials=lambda: None)
    with pytest.raises(RegistryAuthError, match="no AWS credentials to sign the registry's IAM auth token"):
        provider.token()


def test_refresh_must_leave_token_lifetime() -> None:
    """A refresh interval that would hand out expired tokens is refused."""
    with pytest.raises(ValueError, match="refresh_s=900 is outside 1-840 s"):
        IamAuthTokenProvider(user_id="u", cache_name="c", region="r", refresh_s=900)


def test_env_names_match_the_settings_codec() -> None:
    """The module's environment names are the ones the settings codec (and so the constructs) render."""
    from stickyws import settings

    assert (
        registry_auth.ENV_AUTH,
        registry_auth.ENV_USER,
        registry_auth.ENV_IAM_CACHE_NAME,
        registry_auth.ENV_IAM_SERVERLESS,
        registry_auth.ENV_PASSWORD,
        registry_auth.ENV_PASSWORD_SECRET_ARN,
    ) == (
        settings.ENV_REDIS_AUTH,
        settings.ENV_REDIS_USER,
        settings.ENV_REDIS_IAM_CACHE_NAME,
        settings.ENV_REDIS_IAM_SERVERLESS,
        settings.ENV_REDIS_PASSWORD,
        settings.ENV_REDIS_PASSWORD_SECRET_ARN,
    )
    assert registry_auth.AUTH_MODES == settings.model.REGISTRY_AUTH_MODES


def test_env_iam_builds_a_provider_for_the_named_cache() -> None:
    """REDIS_AUTH=iam with user, cache, region and the Serverless flag yields a provider signing for that cache."""
    provider = credential_provider_from_env(
        {
            "REDIS_AUTH": "iam",
            "REDIS_USER": "svc",
            "REDIS_IAM_CACHE_NAME": "my-cache",
            "REDIS_IAM_SERVERLESS": "true",
            "AWS_REGION": "ap-south-1",
        },
        credentials=lambda: CREDS,
    )
    assert isinstance(provider, IamAuthTokenProvider)
    user, token = provider.get_credentials()
    host, params = split_token(token)
    assert (user, host, params["ResourceType"]) == ("svc", "my-cache", "ServerlessCache")
    assert params["X-Amz-Credential"].split("/")[2] == "ap-south-1"


def test_env_token_reads_the_password_or_the_secret() -> None:
    """REDIS_AUTH=token takes REDIS_PASSWORD, else reads the secret named by REDIS_PASSWORD_SECRET_ARN once."""
    direct = credential_provider_from_env({"REDIS_AUTH": "token", "REDIS_USER": "svc", "REDIS_PASSWORD": "p1"})
    assert direct is not None
    assert direct.get_credentials() == ("svc", "p1")
    read: list[str] = []

    def read_secret(arn: str) -> str:
        read.append(arn)
        return '{"password": "from-secret", "username": "ignored"}'

    via_secret = credential_provider_from_env(
        {"REDIS_AUTH": "token", "REDIS_PASSWORD_SECRET_ARN": "arn:aws:secretsmanager:x"}, read_secret=read_secret
    )
    assert via_secret is not None
    assert via_secret.get_credentials() == ("default", "from-secret")
    assert read == ["arn:aws:secretsmanager:x"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_AUTH": "kerberos"}, "REDIS_AUTH='kerberos' is not one of iam, token, none"),
        ({"REDIS_AUTH": "iam", "REDIS_USER": "svc"}, "REDIS_AUTH=iam needs REDIS_IAM_CACHE_NAME, AWS_REGION"),
        ({"REDIS_AUTH": "token"}, "REDIS_AUTH=token needs REDIS_PASSWORD or REDIS_PASSWORD_SECRET_ARN"),
    ],
)
def test_env_errors_name_the_missing_variable(env: dict[str, str], message: str) -> None:
    """Incomplete auth environments fail with a RegistryAuthError that says which variable to set."""
    with pytest.raises(RegistryAuthError, match=message):
        credential_provider_from_env(env)


def test_env_none_or_unset_means_no_provider() -> None:
    """REDIS_AUTH=none or unset: no provider, the URL's credentials (if any) apply."""
    assert credential_provider_from_env({}) is None
    assert credential_provider_from_env({"REDIS_AUTH": "none"}) is None


def test_secret_text_forms() -> None:
    """A secret is JSON with a password field or the bare password; JSON without one is refused."""
    assert password_from_secret('{"password": "x"}') == "x"
    assert password_from_secret("plain:text") == "plain:text"
    with pytest.raises(RegistryAuthError, match="without a non-empty 'password' field"):
        password_from_secret('{"pass": "x"}')


def test_server_config_reads_the_auth_environment() -> None:
    """The server builds its registry credentials from REDIS_AUTH; an incomplete setup stops start-up with one line."""
    from stickyws.server.app import StartupError, config_from_env

    base = {"STICKYWS_JWT_SECRET": "k" * 32, "REDIS_URL": "rediss://reg:6379"}
    config = config_from_env({**base, "REDIS_AUTH": "token", "REDIS_USER": "svc", "REDIS_PASSWORD": "pw"})
    assert config.registry_credentials.get_credentials() == ("svc", "pw")
    assert config_from_env(base).registry_credentials is None
    with pytest.raises(StartupError, match="registry authentication: REDIS_AUTH=iam needs REDIS_USER"):
        config_from_env({**base, "REDIS_AUTH": "iam"})
