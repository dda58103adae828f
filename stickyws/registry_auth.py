"""Credentials for the connection registry: ElastiCache IAM auth tokens or a password, as redis-py wants them.

ElastiCache RBAC knows three ways in, chosen by the ``REDIS_AUTH`` environment variable that
``ConnectionRegistry`` renders for the service and the drain notifier:

``iam``
    The client sends ``AUTH <user id> <token>``, where the token is a SigV4-presigned
    ``GET http://<cache name>/?Action=connect&User=<user id>`` request (service ``elasticache``,
    ``ResourceType=ServerlessCache`` for a Serverless cache) without its ``http://`` prefix, valid
    for 15 minutes. :class:`IamAuthTokenProvider` signs one with the process's AWS credentials (the
    task role, the Lambda role), reuses it for :data:`TOKEN_REFRESH_S` and then signs a fresh one, so
    every new connection authenticates with a token well inside its lifetime. Connections already
    open stay open when their token expires (ElastiCache closes IAM connections after 12 hours; the
    client reconnects).
``token``
    A password for the RBAC user, from ``REDIS_PASSWORD`` (an ECS secret) or read once from the
    Secrets Manager secret named by ``REDIS_PASSWORD_SECRET_ARN`` (JSON ``{"password": ...}`` or the
    bare password).
``none`` (or unset)
    No credentials beyond what the URL carries.

Pure apart from the signing clock and the credential look-up, both injectable; the tests sign with a
fixed clock and fake credentials and never call AWS. The module imports only the standard library,
redis-py and, only when it signs or reads a secret, botocore (present in the Lambda runtime), so the
drain-notifier bundle can carry it.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import quote

from redis.credentials import CredentialProvider, UsernamePasswordCredentialProvider

#: Environment names; the same as ``stickyws.settings.ENV_REDIS_*`` (the Lambda bundle carries no
#: settings package; tests pin the equality).
ENV_AUTH: Final = "REDIS_AUTH"
ENV_USER: Final = "REDIS_USER"
ENV_IAM_CACHE_NAME: Final = "REDIS_IAM_CACHE_NAME"
ENV_IAM_SERVERLESS: Final = "REDIS_IAM_SERVERLESS"
ENV_PASSWORD: Final = "REDIS_PASSWORD"
ENV_PASSWORD_SECRET_ARN: Final = "REDIS_PASSWORD_SECRET_ARN"
AUTH_MODES: Final = ("iam", "token", "none")

#: Lifetime of an ElastiCache IAM auth token (the service's maximum).
TOKEN_LIFETIME_S: Final = 900
#: A signed token is reused this long, then replaced: a connection opened at the last moment still
#: presents a token with 5 minutes left.
TOKEN_REFRESH_S: Final = 600
SERVICE: Final = "elasticache"
_SIGV4_TIMESTAMP: Final = "%Y%m%dT%H%M%SZ"

Clock = Callable[[], float]


class RegistryAuthError(RuntimeError):
    """The registry credentials cannot be built; the message names the missing piece and the fix."""


def presign_connect(
    *,
    cache_name: str,
    user_id: str,
    region: str,
    credentials: Any,
    now: datetime.datetime,
    serverless: bool = False,
    expires_s: int = TOKEN_LIFETIME_S,
) -> str:
    """The IAM auth token for ``user_id`` on ``cache_name``, signed at ``now`` (UTC) with ``credentials``.

    ``credentials`` is a botocore ``Credentials`` (or anything with ``access_key``, ``secret_key``
    and ``token``). The token is ``<cache name>/?Action=connect&User=...&X-Amz-...`` (the presigned
    URL without its scheme).
    """
    from botocore.awsrequest import AWSRequest

    params = {"Action": "connect", "User": user_id}
    if serverless:
        params["ResourceType"] = "ServerlessCache"
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    request = AWSRequest(method="GET", url=f"http://{cache_name}/?{query}")
    _sign_query(request, credentials, region, expires_s, now)
    url: str = request.prepare().url
    return url.removeprefix("http://")


def _sign_query(request: Any, credentials: Any, region: str, expires_s: int, now: datetime.datetime) -> None:
    """Add SigV4 query authentication to ``request`` with botocore's signer, at ``now`` instead of the system clock."""
    from botocore.auth import SigV4QueryAuth

    signer = SigV4QueryAuth(credentials, SERVICE, region, expires=expires_s)
    request.context["timestamp"] = now.astimezone(datetime.UTC).strftime(_SIGV4_TIMESTAMP)
    # SigV4QueryAuth.add_auth minus its clock read: the same steps on botocore's own methods.
    signer._modify_request_before_signing(request)
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    signer._inject_signature_to_request(request, signature)


class IamAuthTokenProvider(CredentialProvider):
    """redis-py credentials ``(user id, IAM auth token)``, the token re-signed every :data:`TOKEN_REFRESH_S`.

    :param user_id: the ElastiCache user id (for IAM users the user name equals the id).
    :param cache_name: replication group id or Serverless cache name the token is for.
    :param region: AWS region of the cache.
    :param serverless: sign for a Serverless cache (``ResourceType=ServerlessCache``).
    :param credentials: returns the AWS credentials to sign with (frozen botocore credentials or
        alike); default: botocore's default chain (task role, Lambda role, environment).
    :param clock: seconds since the epoch; default :func:`time.time`.
    :param refresh_s: reuse a token this long (1 to :data:`TOKEN_LIFETIME_S` - 60 s).
    """

    def __init__(
        self,
        *,
        user_id: str,
        cache_name: str,
        region: str,
        serverless: bool = False,
        credentials: Callable[[], Any] | None = None,
        clock: Clock = time.time,
        refresh_s: float = TOKEN_REFRESH_S,
    ) -> None:
        if not 1 <= refresh_s <= TOKEN_LIFETIME_S - 60:
            raise ValueError(f"refresh_s={refresh_s} is outside 1-{TOKEN_LIFETIME_S - 60} s: tokens live 15 minutes")
        self.user_id, self.cache_name, self.region, self.serverless = user_id, cache_name, region, serverless
        self._credentials = credentials or _default_credentials
        self._clock = clock
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._token: str | None = None
        self._signed_at = 0.0

    def token(self) -> str:
        """The current token, signed anew when the cached one is :data:`TOKEN_REFRESH_S` old."""
        with self._lock:
            now = self._clock()
            if self._token is None or now - self._signed_at >= self._refresh_s:
                creds = self._credentials()
                if creds is None:
                    raise RegistryAuthError(
                        "no AWS credentials to sign the registry's IAM auth token: give the task or function a "
                        "role (ConnectionRegistry.grant_connect), or set AWS credentials in the environment"
                    )
                self._token = presign_connect(
                    cache_name=self.cache_name,
                    user_id=self.user_id,
                    region=self.region,
                    credentials=creds,
                    now=datetime.datetime.fromtimestamp(now, datetime.UTC),
                    serverless=self.serverless,
                )
                self._signed_at = now
            return self._token

    def get_credentials(self) -> tuple[str, str]:
        """``(user id, token)`` for redis-py's ``AUTH``."""
        return self.user_id, self.token()

    async def get_credentials_async(self) -> tuple[str, str]:
        """The same as :meth:`get_credentials` (signing is local and takes microseconds)."""
        return self.get_credentials()


def _default_credentials() -> Any:
    import botocore.session

    creds = botocore.session.get_session().get_credentials()
    return None if creds is None else creds.get_frozen_credentials()


def credential_provider_from_env(
    env: Mapping[str, str],
    *,
    read_secret: Callable[[str], str] | None = None,
    credentials: Callable[[], Any] | None = None,
    clock: Clock = time.time,
) -> CredentialProvider | None:
    """The credential provider ``env`` asks for (``REDIS_AUTH``), or ``None`` for ``none``/unset.

    ``read_secret(arn)`` returns a Secrets Manager secret's string (default: botocore's
    ``GetSecretValue``); ``credentials`` and ``clock`` go to :class:`IamAuthTokenProvider`.
    Raises :class:`RegistryAuthError` naming the missing variable.
    """
    mode = (env.get(ENV_AUTH) or "none").strip().lower()
    if mode not in AUTH_MODES:
        raise RegistryAuthError(f"{ENV_AUTH}={env.get(ENV_AUTH)!r} is not one of {', '.join(AUTH_MODES)}")
    if mode == "none":
        return None
    user = env.get(ENV_USER, "").strip()
    if mode == "iam":
        cache = env.get(ENV_IAM_CACHE_NAME, "").strip()
        region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip()
        missing = [n for n, v in ((ENV_USER, user), (ENV_IAM_CACHE_NAME, cache), ("AWS_REGION", region)) if not v]
        if missing:
            raise RegistryAuthError(
                f"{ENV_AUTH}=iam needs {', '.join(missing)}: ConnectionRegistry renders them; set them to the "
                "registry's IAM user id, its replication group id (or Serverless cache name) and its region"
            )
        serverless = env.get(ENV_IAM_SERVERLESS, "false").strip().lower() in ("1", "true", "yes", "on")
        return IamAuthTokenProvider(
            user_id=user, cache_name=cache, region=region, serverless=serverless, credentials=credentials, clock=clock
        )
    password = env.get(ENV_PASSWORD, "")
    if not password:
        arn = env.get(ENV_PASSWORD_SECRET_ARN, "").strip()
        if not arn:
            raise RegistryAuthError(
                f"{ENV_AUTH}=token needs {ENV_PASSWORD} or {ENV_PASSWORD_SECRET_ARN}: pass the registry password "
                "as a secret, or the ARN of the Secrets Manager secret that holds it"
            )
        password = password_from_secret((read_secret or _read_secret)(arn))
    return UsernamePasswordCredentialProvider(user or "default", password)


def password_from_secret(text: str) -> str:
    """The password in a secret's string: JSON ``{"password": ...}`` or the bare string."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict):
        value = data.get("password")
        if not isinstance(value, str) or not value:
            raise RegistryAuthError("the registry secret is a JSON object without a non-empty 'password' field")
        return value
    return text


def _read_secret(arn: str) -> str:
    import botocore.exceptions
    import botocore.session

    try:
        client = botocore.session.get_session().create_client("secretsmanager")
        value = client.get_secret_value(SecretId=arn).get("SecretString")
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise RegistryAuthError(
            f"cannot read the registry password from {arn}: {exc}. Grant secretsmanager:GetSecretValue on it "
            "(ConnectionRegistry.grant_connect does)"
        ) from None
    if not isinstance(value, str):
        raise RegistryAuthError(f"secret {arn} holds no SecretString: store the password as text")
    return value
