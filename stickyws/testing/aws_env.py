"""A fake AWS environment for tests: credentials and region that only moto accepts, no way out to AWS.

The functions take anything with pytest's ``MonkeyPatch`` ``setenv``/``delenv`` methods, so the
environment comes back as it was when the monkeypatch is undone.
"""

from __future__ import annotations

from typing import Protocol

#: Region of the fake environment (and of the moto account the pytest plugin creates).
REGION = "eu-west-1"


class EnvironmentPatch(Protocol):
    """What :func:`fake_aws_environment` needs of pytest's ``MonkeyPatch``."""

    def setenv(self, name: str, value: str, prepend: str | None = None) -> None: ...

    def delenv(self, name: str, raising: bool = True) -> None: ...


FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    # Never fall back to the instance metadata service or a real profile.
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/stickyws-tests/config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/stickyws-tests/credentials",
}
CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


def fake_aws_environment(mp: EnvironmentPatch, region: str = REGION) -> None:
    """Fake credentials and ``region`` in the environment, nothing that could reach AWS."""
    for name in CLEARED:
        mp.delenv(name, raising=False)
    for name, value in FAKE_CREDENTIALS.items():
        mp.setenv(name, value)
    mp.setenv("AWS_DEFAULT_REGION", region)


def no_aws_credentials(mp: EnvironmentPatch) -> None:
    """An environment with a region but no credentials anywhere boto3 looks."""
    fake_aws_environment(mp)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        mp.delenv(name, raising=False)
