"""No static keys: ObjectStore takes its credentials from the AWS chain (shared/credentials.py).

A fake EC2 instance-metadata service on loopback answers as an IMDSv2-only instance does (a session token
first; anything without it gets 401), pointed at by the standard ``AWS_EC2_METADATA_SERVICE_ENDPOINT``.

SeaweedFS (the real S3 server of the tests) has no STS and refuses any session token ("InvalidAccessKeyId"),
so the role's temporary keys are checked in two halves: a recording fake S3 shows that every request,
presigned ones included, is signed with the role's key id and carries its session token; and the real server
accepts requests signed with keys that came through the chain (from the environment, and from the fake
instance metadata with an empty token).
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.credentials import IMDS_ENDPOINT_VARIABLE, CredentialChain, NoCredentials
from shared.settings import Environment, Settings
from shared.storage import ObjectStore, StorageError
from sporeprint.stack import StackState, free_port

pytestmark = pytest.mark.e2e

ROLE = "sporeprint-gpu"
ROLE_KEY_ID = "ASIA" + secrets.token_hex(8).upper()
ROLE_SECRET = secrets.token_urlsafe(30)
ROLE_TOKEN = "IQoJb3JpZ2luX2VjE" + secrets.token_urlsafe(40)  # the shape of an STS session token


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)


@dataclass
class FakeImds:
    """What the fake instance metadata serves, and every request it got."""

    url: str
    key_id: str = ROLE_KEY_ID
    secret: str = ROLE_SECRET
    token: str = ROLE_TOKEN
    lifetime: timedelta = timedelta(hours=6)
    role: str | None = ROLE  # None: an instance without a role
    session_tokens: set[str] = field(default_factory=set)
    requests: list[Seen] = field(default_factory=list)

    def credential_fetches(self) -> int:
        return sum(seen.path == f"/latest/meta-data/iam/security-credentials/{self.role}" for seen in self.requests)


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing of the developer's machine leaks in: no AWS_* variables, no ~/.aws/credentials."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-such-credentials-file"))


@pytest.fixture
def imds(no_aws_environment: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeImds]:
    fake = FakeImds(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def answer(self, status: int, body: str, content_type: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def record(self) -> None:
            fake.requests.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))

        def do_PUT(self) -> None:  # http.server's naming
            self.record()
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if self.path != "/latest/api/token":
                self.answer(404, "Not Found")
            elif not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                self.answer(400, "Bad Request")
            else:
                session = secrets.token_urlsafe(32)
                fake.session_tokens.add(session)
                self.answer(200, session)

        def do_GET(self) -> None:
            self.record()
            if self.headers.get("X-aws-ec2-metadata-token") not in fake.session_tokens:
                self.answer(401, "Unauthorized")  # IMDSv2 required: v1 requests are refused
                return
            prefix = "/latest/meta-data/iam/security-credentials/"
            if self.path == prefix and fake.role:
                self.answer(200, fake.role)
            elif self.path == prefix + str(fake.role) and fake.role:
                now = datetime.now(UTC)
                self.answer(200, json.dumps({
                    "Code": "Success", "LastUpdated": f"{now:%Y-%m-%dT%H:%M:%SZ}", "Type": "AWS-HMAC",
                    "AccessKeyId": fake.key_id, "SecretAccessKey": fake.secret, "Token": fake.token,
                    "Expiration": f"{now + fake.lifetime:%Y-%m-%dT%H:%M:%SZ}",
                }), "application/json")
            else:
                self.answer(404, "Not Found")

    server, fake.url = serve(Handler)
    monkeypatch.setenv(IMDS_ENDPOINT_VARIABLE, fake.url)
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake_s3() -> Iterator[tuple[str, list[Seen]]]:
    """An S3 endpoint that accepts everything and records each request's headers (no signature check)."""
    seen: list[Seen] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_PUT(self) -> None:
            seen.append(Seen("PUT", self.path, {k.lower(): v for k, v in self.headers.items()}))
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("ETag", '"0123456789abcdef"')
            self.send_header("Content-Length", "0")
            self.end_headers()

    server, url = serve(Handler)
    yield url.removeprefix("http://"), seen
    server.shutdown()
    server.server_close()


def keyless_settings(endpoint: str, bucket: str = "sporeprint") -> Settings:
    # a region is set, as on AWS, so that the first request is the store's own (no GetBucketLocation first)
    return Settings(environment=Environment.test, s3_endpoint=endpoint, s3_bucket=bucket, s3_region="us-east-1",
                    api_token="a-real-token-1234")


def test_the_instance_role_signs_every_request_with_its_key_and_session_token(
    imds: FakeImds, fake_s3: tuple[str, list[Seen]]
) -> None:
    endpoint, seen = fake_s3
    store = ObjectStore.from_settings(keyless_settings(endpoint))
    store.put_bytes("models/a.json", b"{}")
    store.compare_and_set("models/promoted.json", {"model_id": "a"}, None)  # a presigned PUT

    signed, presigned = seen
    assert signed.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ROLE_KEY_ID}/")
    assert signed.headers["x-amz-security-token"] == ROLE_TOKEN
    assert "x-amz-security-token" in signed.headers["authorization"].lower()  # the token is signed too
    assert presigned.query["X-Amz-Credential"][0].startswith(f"{ROLE_KEY_ID}/")
    assert presigned.query["X-Amz-Security-Token"] == [ROLE_TOKEN]
    chain = store.client._provider
    assert isinstance(chain, CredentialChain) and chain.source == f"instance metadata (IMDSv2) at {imds.url}"

    # IMDSv2: a session token first, then only requests carrying it; the role's keys fetched once for both calls
    token_put, *gets = imds.requests
    assert (token_put.method, token_put.path) == ("PUT", "/latest/api/token")
    assert int(token_put.headers["x-aws-ec2-metadata-token-ttl-seconds"]) > 0
    assert [seen.path for seen in gets] == [f"/latest/meta-data/iam/security-credentials/{p}" for p in ("", ROLE)]
    assert all(seen.headers.get("x-aws-ec2-metadata-token") in imds.session_tokens for seen in gets)


def test_role_keys_are_fetched_again_when_they_expire(imds: FakeImds, fake_s3: tuple[str, list[Seen]]) -> None:
    imds.lifetime = timedelta(seconds=5)  # within minio's 10 s margin: already due for renewal
    endpoint, seen = fake_s3
    store = ObjectStore.from_settings(keyless_settings(endpoint))
    store.put_bytes("a", b"1")
    imds.key_id = "ASIAROTATED0000000"
    store.put_bytes("b", b"2")
    assert imds.credential_fetches() == 2
    assert seen[-1].headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=ASIAROTATED0000000/")


def test_environment_keys_from_the_chain_work_against_the_real_s3_server(
    stack: StackState, no_aws_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", stack.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", stack.secret_key)
    monkeypatch.setenv(IMDS_ENDPOINT_VARIABLE, f"http://127.0.0.1:{free_port()}")  # never asked
    settings = Settings(environment=Environment.test, s3_endpoint=stack.s3_endpoint,
                        s3_bucket=f"cred-{uuid.uuid4().hex[:12]}", api_token="a-real-token-1234")
    assert settings.s3_access_key is None
    store = ObjectStore.from_settings(settings)
    store.ensure_bucket()
    store.put_bytes("images/x.jpg", b"photo")
    assert store.get_bytes("images/x.jpg") == b"photo"
    store.compare_and_set("models/promoted.json", {"model_id": "a"}, None)
    assert store.get_json("models/promoted.json") == {"model_id": "a"}
    assert isinstance(store.client._provider, CredentialChain)
    assert store.client._provider.source == "environment (AWS_ACCESS_KEY_ID)"


def test_keys_from_the_instance_metadata_work_against_the_real_s3_server(stack: StackState, imds: FakeImds) -> None:
    # the whole IMDSv2 path with real signatures checked by a real server; the empty token is only because
    # SeaweedFS refuses session tokens (the test above shows the token is sent when there is one)
    imds.key_id, imds.secret, imds.token = stack.access_key, stack.secret_key, ""
    settings = keyless_settings(stack.s3_endpoint, f"cred-{uuid.uuid4().hex[:12]}")
    store = ObjectStore.from_settings(settings)
    store.ensure_bucket()
    store.put_json("curation/blacklist.json", {"entries": []})
    assert store.get_json("curation/blacklist.json") == {"entries": []}
    assert imds.requests[0].path == "/latest/api/token" and imds.credential_fetches() == 1
    again = pickle.loads(pickle.dumps(store))  # as RQ hands a store to a worker: it builds its own chain
    assert again.get_json("curation/blacklist.json") == {"entries": []}
    assert again.client._provider is not store.client._provider


def test_no_credentials_anywhere_fails_fast_with_one_clear_error(no_aws_environment: None,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(IMDS_ENDPOINT_VARIABLE, closed)
    store = ObjectStore.from_settings(keyless_settings(f"127.0.0.1:{free_port()}"))
    started = time.monotonic()
    with pytest.raises(NoCredentials) as caught:
        store.put_bytes("a", b"1")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert isinstance(caught.value, StorageError)
    assert message.startswith("no S3 credentials: set SPOREPRINT_S3_ACCESS_KEY and SPOREPRINT_S3_SECRET_KEY")
    assert "instance role (IMDSv2" in message and "Pod Identity" in message
    assert "AWS_ACCESS_KEY_ID is not set" in message
    assert "no-such-credentials-file" in message
    assert f"instance metadata (IMDSv2) at {closed}: cannot connect" in message
    assert "\n" not in message and "object at 0x" not in message
    assert store.ping() is False


def test_an_instance_without_a_role_says_so(imds: FakeImds) -> None:
    imds.role = None
    store = ObjectStore.from_settings(keyless_settings(f"127.0.0.1:{free_port()}"))
    with pytest.raises(NoCredentials, match=r"security-credentials/ failed with HTTP status code 404"):
        store.exists("a")


def test_a_metadata_endpoint_that_never_answers_times_out(no_aws_environment: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv(IMDS_ENDPOINT_VARIABLE, f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("AWS_METADATA_SERVICE_TIMEOUT", "0.5")
        store = ObjectStore.from_settings(keyless_settings(f"127.0.0.1:{free_port()}"))
        started = time.monotonic()
        with pytest.raises(NoCredentials, match=r"no answer \(timed out\)"):
            store.get_bytes("a")
        assert time.monotonic() - started < 5
