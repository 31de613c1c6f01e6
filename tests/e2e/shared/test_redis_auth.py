"""Redis as docker-compose and Kubernetes start it (their start script, run here with a real redis-server):
only the ACL user logs in, with the password from the settings, and may not run the dangerous commands; a
real worker process authenticates from the settings and runs a job; without the password nothing works."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from pydantic import SecretStr

from shared.queue import REDIS_USER, QueueName, enqueue, fetch_job, redacted_url, redis_connection
from shared.settings import Environment, Settings
from sporeprint.stack import free_port, terminate_pid, wait_for_port
from tests.conftest import settings_env

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]


def compose_redis_start() -> str:
    """docker-compose.yml's Redis start script as the container's shell gets it ($$ is compose's escape)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    script = compose["x-redis-start"]
    assert isinstance(script, str)
    return script.replace("$$", "$")


def start_redis(tmp_path: Path, password: str, port: int) -> subprocess.Popen[bytes]:
    env = {"PATH": os.environ["PATH"], "SPOREPRINT_REDIS_USERNAME": REDIS_USER,
           "SPOREPRINT_REDIS_PASSWORD": password, "REDIS_ACL_FILE": str(tmp_path / "users.acl")}
    args = ["sh", "-c", compose_redis_start(), "redis", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)


@pytest.fixture
def authenticated_redis(tmp_path: Path) -> Iterator[tuple[int, str]]:
    if shutil.which("redis-server") is None:
        pytest.skip("compose's start script runs redis-server; none on PATH here")
    password = secrets.token_hex(16)
    port = free_port()
    proc = start_redis(tmp_path, password, port)
    try:
        wait_for_port(port, 20)
        yield port, password
    finally:
        terminate_pid(proc.pid, "redis")


def settings_for(port: int, password: str | None, url_password: str | None = None) -> Settings:
    userinfo = f"{REDIS_USER}:{url_password}@" if url_password else ""
    return Settings(environment=Environment.test, api_token="a-real-token-1234",
                    redis_url=f"redis://{userinfo}127.0.0.1:{port}/0",
                    redis_username=REDIS_USER if password else None,
                    redis_password=SecretStr(password) if password else None)


def test_only_the_acl_user_with_its_password_gets_in(authenticated_redis: tuple[int, str]) -> None:
    port, password = authenticated_redis
    with pytest.raises(redis.exceptions.AuthenticationError):  # no password: the default user is off
        redis.Redis(port=port).ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis_connection(settings_for(port, "not-the-password")).ping()
    with pytest.raises(redis.exceptions.AuthenticationError):  # the default user, even knowing the password
        redis.Redis(port=port, password=password).ping()
    connection = redis_connection(settings_for(port, password))
    assert connection.ping() is True
    # the settings' password wins over a wrong one in the URL; the URL's alone works too
    assert redis_connection(settings_for(port, password, url_password="stale")).ping() is True
    assert redis_connection(settings_for(port, None, url_password=password)).ping() is True
    for dangerous in (("FLUSHALL",), ("CONFIG", "GET", "dir"), ("KEYS", "*"), ("ACL", "LIST")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            connection.execute_command(*dangerous)


def test_a_real_worker_authenticates_from_the_settings_and_runs_the_job(
        authenticated_redis: tuple[int, str]) -> None:
    port, password = authenticated_redis
    settings = settings_for(port, password)
    connection = redis_connection(settings)
    job = enqueue(connection, QueueName.curate, os.getpid, job_id="auth-check", timeout_s=60, keep_s=60)
    env = {**os.environ, **settings_env(settings)}
    result = subprocess.run([sys.executable, "-m", "shared.worker", "curate", "--burst"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    finished = fetch_job(connection, job.id)
    assert finished is not None and finished.get_status() == "finished"
    assert isinstance(finished.return_value(), int)
    assert password not in result.stdout + result.stderr, "the worker logged the Redis password"

    without = {key: value for key, value in env.items() if key != "SPOREPRINT_REDIS_PASSWORD"}
    refused = subprocess.run([sys.executable, "-m", "shared.worker", "curate", "--burst"], env=without,
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode != 0
    assert "Authentication" in refused.stderr or "NOAUTH" in refused.stderr, refused.stderr[-2000:]


def test_the_start_script_refuses_a_password_it_cannot_write_safely(tmp_path: Path) -> None:
    port = free_port()
    proc = start_redis(tmp_path, "two words", port)
    assert proc.wait(timeout=20) == 1
    assert not (tmp_path / "users.acl").exists()


def test_production_settings_refuse_a_redis_without_password() -> None:
    with pytest.raises(ValueError, match="Redis needs a password in production"):
        Settings(environment=Environment.production, api_token="a-real-token-1234", redis_url="redis://redis:6379/0")
    ok = Settings(environment=Environment.production, api_token="a-real-token-1234",
                  redis_url="rediss://redis:6380/0", redis_password=SecretStr("a-real-password-1234"))
    assert ok.redis_has_password


def test_redis_urls_are_shown_without_their_password() -> None:
    assert redacted_url("redis://sporeprint:s3cret@redis:6379/0") == "redis://sporeprint:***@redis:6379/0"
    assert redacted_url("rediss://:s3cret@redis:6380/0") == "rediss://:***@redis:6380/0"
    assert redacted_url("redis://redis:6379/0") == "redis://redis:6379/0"


def test_rediss_verifies_the_servers_certificate_against_the_ca_file(tmp_path: Path) -> None:
    """TLS (``rediss://``): a real redis-server on a TLS port, a self-signed certificate as the CA."""
    if shutil.which("openssl") is None or shutil.which("redis-server") is None:
        pytest.skip("needs openssl (to make a certificate) and redis-server")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    password, port = secrets.token_hex(16), free_port()
    env = {"PATH": os.environ["PATH"], "SPOREPRINT_REDIS_USERNAME": REDIS_USER,
           "SPOREPRINT_REDIS_PASSWORD": password, "REDIS_ACL_FILE": str(tmp_path / "users.acl")}
    proc = subprocess.Popen(["sh", "-c", compose_redis_start(), "redis", "--port", "0", "--tls-port", str(port),
                             "--bind", "127.0.0.1", "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                             "--tls-auth-clients", "no", "--save", "", "--dir", str(tmp_path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, 20)
        url = f"rediss://127.0.0.1:{port}/0"
        trusted = Settings(environment=Environment.test, api_token="a-real-token-1234", redis_url=url,
                           redis_username=REDIS_USER, redis_password=SecretStr(password), redis_ca_file=str(cert))
        assert redis_connection(trusted).ping() is True
        untrusted = trusted.model_copy(update={"redis_ca_file": None})  # the system's CAs do not know it
        with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            redis_connection(untrusted).ping()
    finally:
        terminate_pid(proc.pid, "redis")
