"""The S3 users docker-compose gives SeaweedFS (sporeprint/s3_identities.py), on a real SeaweedFS: the
services' user can use its bucket and nothing else; only the admin creates buckets."""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio
from minio.error import S3Error

from sporeprint.s3_identities import IdentitiesError, identities
from sporeprint.stack import LocalStack, StackState

pytestmark = pytest.mark.e2e

BUCKET = "sporeprint"


@pytest.fixture(scope="module")
def scoped_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackState, str, str]]:
    service_key, service_secret = "sporeprint", secrets.token_hex(16)
    document = identities(BUCKET, service_key, service_secret, "sporeprint-admin", secrets.token_hex(16))
    stack = LocalStack(tmp_path_factory.mktemp("scoped-s3"))
    state = stack.up(bucket=BUCKET, s3_identities=document)  # the stack (as the admin) creates the bucket
    try:
        admin = Minio(state.s3_endpoint, access_key=state.access_key, secret_key=state.secret_key, secure=False)
        admin.make_bucket("someone-elses")
        admin.put_object("someone-elses", "private.txt", io.BytesIO(b"not yours"), 9)
        yield state, service_key, service_secret
    finally:
        stack.down(clean=True)


def test_the_services_user_reads_writes_and_lists_its_bucket(scoped_stack: tuple[StackState, str, str]) -> None:
    state, key, secret = scoped_stack
    client = Minio(state.s3_endpoint, access_key=key, secret_key=secret, secure=False)
    client.put_object(BUCKET, "images/a.jpg", io.BytesIO(b"jpeg"), 4)
    assert client.get_object(BUCKET, "images/a.jpg").read() == b"jpeg"
    assert [item.object_name for item in client.list_objects(BUCKET, prefix="images/")] == ["images/a.jpg"]
    assert client.bucket_exists(BUCKET)


def test_the_health_check_compose_runs_answers(scoped_stack: tuple[StackState, str, str]) -> None:
    """docker-compose.yml's SeaweedFS health check fetches /healthz on the S3 port without credentials."""
    import urllib.request

    import yaml

    compose = yaml.safe_load((Path(__file__).resolve().parents[3] / "docker-compose.yml").read_text())
    test = compose["services"]["seaweedfs"]["healthcheck"]["test"]
    assert test[-1] == "http://127.0.0.1:8333/healthz"
    with urllib.request.urlopen(f"http://{scoped_stack[0].s3_endpoint}/healthz", timeout=5) as answer:
        assert answer.status == 200


def test_the_services_user_cannot_make_or_read_other_buckets(scoped_stack: tuple[StackState, str, str]) -> None:
    state, key, secret = scoped_stack
    client = Minio(state.s3_endpoint, access_key=key, secret_key=secret, secure=False)
    with pytest.raises(S3Error, match="AccessDenied"):
        client.make_bucket("another")
    with pytest.raises(S3Error, match="AccessDenied"):
        client.get_object("someone-elses", "private.txt")
    with pytest.raises(S3Error, match="AccessDenied"):
        client.put_object("someone-elses", "x.txt", io.BytesIO(b"x"), 1)


def test_the_module_writes_a_private_file_and_refuses_bad_keys(tmp_path: Path) -> None:
    path = tmp_path / "s3.json"
    env = {"SPOREPRINT_S3_BUCKET": BUCKET, "SPOREPRINT_S3_ACCESS_KEY": "sporeprint",
           "SPOREPRINT_S3_SECRET_KEY": "a" * 32, "SPOREPRINT_S3_ADMIN_ACCESS_KEY": "sporeprint-admin",
           "SPOREPRINT_S3_ADMIN_SECRET_KEY": "b" * 32, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "sporeprint.s3_identities", str(path)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    users = {user["name"]: user["actions"] for user in json.loads(path.read_text())["identities"]}
    assert users == {"admin": ["Admin", "Read", "Write", "List", "Tagging"],
                     "sporeprint": ["Read:sporeprint", "Write:sporeprint", "List:sporeprint", "Tagging:sporeprint"]}
    refused = subprocess.run([sys.executable, "-m", "sporeprint.s3_identities", str(tmp_path / "no.json")],
                             env={**env, "SPOREPRINT_S3_SECRET_KEY": 'has"quote'}, capture_output=True, text=True,
                             timeout=60, check=False)
    assert refused.returncode == 1 and "secret key must be" in refused.stderr
    assert not (tmp_path / "no.json").exists()
    with pytest.raises(IdentitiesError, match="placeholder"):
        identities(BUCKET, "sporeprint", "changeme", "sporeprint-admin", "b" * 32)
    with pytest.raises(IdentitiesError, match="must differ"):
        identities(BUCKET, "same", "a" * 32, "same", "b" * 32)
    with pytest.raises(IdentitiesError, match="bucket"):
        identities("../x", "s", "a" * 32, "a", "b" * 32)
