"""The AWS credential chain of shared/credentials.py, in-process: order, the sources it names, its one error."""

from __future__ import annotations

import os
import pickle
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from minio.credentials import Credentials, StaticProvider
from minio.credentials.providers import IamAwsProvider, Provider

from shared.credentials import (
    IMDS_DEFAULT_ENDPOINT,
    IMDS_ENDPOINT_VARIABLE,
    CredentialChain,
    NoCredentials,
    Source,
    aws_credential_chain,
    imds_endpoint,
    role_source,
)
from shared.settings import Environment, Settings
from shared.storage import ObjectStore, StorageError

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS_* variable of this machine, no ~/.aws, and no instance metadata (unit tests open no sockets)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def write_credentials_file(home: Path) -> Path:
    path = home / ".aws" / "credentials"
    path.parent.mkdir()
    path.write_text("[default]\naws_access_key_id = AKIAFILEDEFAULT\naws_secret_access_key = file-secret\n\n"
                    "[ci]\naws_access_key_id = ASIAFILECI\naws_secret_access_key = ci-secret\n"
                    "aws_session_token = ci-token\n")
    return path


def keyless(endpoint: str = "127.0.0.1:9") -> Settings:
    return Settings(environment=Environment.test, s3_endpoint=endpoint, s3_region="us-east-1",
                    api_token="a-real-token-1234")


def test_environment_keys_win_over_the_credentials_file(monkeypatch: pytest.MonkeyPatch,
                                                        no_aws_environment: Path) -> None:
    write_credentials_file(no_aws_environment)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token")
    chain = aws_credential_chain()
    credentials = chain.retrieve()
    assert (credentials.access_key, credentials.secret_key, credentials.session_token) == (
        "ASIAENV", "env-secret", "env-token")
    assert chain.source == "environment (AWS_ACCESS_KEY_ID)"


def test_the_credentials_file_and_its_profile(monkeypatch: pytest.MonkeyPatch, no_aws_environment: Path) -> None:
    write_credentials_file(no_aws_environment)
    assert aws_credential_chain().retrieve().access_key == "AKIAFILEDEFAULT"
    monkeypatch.setenv("AWS_PROFILE", "ci")
    chain = aws_credential_chain()
    credentials = chain.retrieve()
    assert (credentials.access_key, credentials.session_token) == ("ASIAFILECI", "ci-token")
    assert chain.source == "shared credentials file ~/.aws/credentials [ci]"


def test_nothing_found_is_one_storage_error_naming_every_source_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAHALF")  # a secret is missing: says so, then goes on
    with pytest.raises(NoCredentials) as caught:
        aws_credential_chain().retrieve()
    assert isinstance(caught.value, StorageError)
    message = str(caught.value)
    assert message.startswith("no S3 credentials: set SPOREPRINT_S3_ACCESS_KEY and SPOREPRINT_S3_SECRET_KEY")
    for tried in ("environment (AWS_ACCESS_KEY_ID): AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
                  "shared credentials file ~/.aws/credentials [default]: access key does not exist",
                  "instance metadata: switched off by AWS_EC2_METADATA_DISABLED=true"):
        assert tried in message


def test_the_first_storage_call_fails_with_no_credentials_and_ping_says_unreachable() -> None:
    store = ObjectStore.from_settings(keyless())
    assert isinstance(store.client._provider, CredentialChain)  # made, but nothing asked yet
    with pytest.raises(NoCredentials, match="^no S3 credentials: "):
        store.put_bytes("images/a.jpg", b"x")
    with pytest.raises(NoCredentials):
        store.presigned_get_url("images/a.jpg")
    with pytest.raises(NoCredentials):  # no region set: minio's bucket-location lookup asks the chain first
        ObjectStore.from_settings(keyless().model_copy(update={"s3_region": None})).exists("a")
    assert store.ping() is False


def test_static_keys_never_touch_the_chain() -> None:
    settings = keyless().model_copy(update={"s3_access_key": "sporeprint", "s3_secret_key": "a-real-secret-1234"})
    provider = ObjectStore.from_settings(settings).client._provider
    assert isinstance(provider, StaticProvider)
    assert provider.retrieve().access_key == "sporeprint"


def test_a_keyless_store_pickles_into_a_store_with_its_own_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    store = ObjectStore.from_settings(keyless())
    store.client._provider.retrieve()  # a lock and cached keys inside: neither is pickled
    again = pickle.loads(pickle.dumps(store))
    assert again.settings == store.settings and again.bucket == store.bucket
    assert isinstance(again.client._provider, CredentialChain) and again.client._provider is not store.client._provider
    assert again.client._provider.retrieve().access_key == "ASIAENV"


@pytest.mark.parametrize(("env", "expected"), [
    ({}, IMDS_DEFAULT_ENDPOINT),
    ({IMDS_ENDPOINT_VARIABLE: "http://127.0.0.1:8111/"}, "http://127.0.0.1:8111"),
    ({"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "IPv6"}, "http://[fd00:ec2::254]"),
    ({"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "IPv6", IMDS_ENDPOINT_VARIABLE: "http://[::1]:8111"},
     "http://[::1]:8111"),
])
def test_the_instance_metadata_address(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert imds_endpoint() == expected
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    source = role_source()
    assert source.name == f"instance metadata (IMDSv2) at {expected}"
    assert isinstance(source.provider, IamAwsProvider)


@pytest.mark.parametrize(("variable", "value", "named"), [
    ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks.amazonaws.com/serviceaccount/token", "web identity"),
    ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials", "container credentials"),
    ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc", "container credentials 169.254.170.2"),
])
def test_a_pod_or_container_identity_is_not_sent_to_the_metadata_address(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv(IMDS_ENDPOINT_VARIABLE, "http://127.0.0.1:8111")  # would replace STS's address in minio
    source = role_source()
    assert source.name.startswith(named) and value in source.name
    assert isinstance(source.provider, IamAwsProvider)
    assert source.provider._custom_endpoint is None


@pytest.mark.parametrize("value", ["soon", "0", "-1"])
def test_a_bad_metadata_timeout_is_refused_when_the_store_is_made(monkeypatch: pytest.MonkeyPatch,
                                                                  value: str) -> None:
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    monkeypatch.setenv("AWS_METADATA_SERVICE_TIMEOUT", value)
    with pytest.raises(ValueError, match="AWS_METADATA_SERVICE_TIMEOUT"):
        ObjectStore.from_settings(keyless())


class Counting(Provider):
    """A source that answers (or fails) as told and counts how often it is asked."""

    def __init__(self, key: str, lifetime: timedelta | None = None) -> None:
        self.key, self.lifetime, self.calls, self.fails = key, lifetime, 0, False

    def retrieve(self) -> Credentials:
        self.calls += 1
        if self.fails:
            raise ValueError(f"{self.key} is gone")
        expiration = datetime.utcnow() + self.lifetime if self.lifetime else None
        return Credentials(self.key, "secret", expiration=expiration)


def test_the_chain_keeps_its_keys_until_they_expire_then_asks_again() -> None:
    lasting, expiring = Counting("lasting"), Counting("expiring", timedelta(seconds=5))  # < minio's 10 s margin
    chain = CredentialChain([Source("lasting", lasting)])
    chain.retrieve(), chain.retrieve()
    assert lasting.calls == 1
    chain = CredentialChain([Source("expiring", expiring)])
    chain.retrieve(), chain.retrieve()
    assert expiring.calls == 2


def test_the_chain_asks_the_source_that_answered_first_and_falls_back_when_it_stops() -> None:
    first, second = Counting("first", timedelta(seconds=1)), Counting("second", timedelta(seconds=1))
    chain = CredentialChain([Source("first", first), Source("second", second)])
    assert chain.retrieve().access_key == "first"
    first.fails = True
    assert chain.retrieve().access_key == "second" and chain.source == "second"
    first.fails = False
    assert chain.retrieve().access_key == "second"  # the one that answered last is asked first
    second.fails = first.fails = True
    with pytest.raises(NoCredentials, match="first: first is gone; second: second is gone"):
        chain.retrieve()
    assert chain.source is None
