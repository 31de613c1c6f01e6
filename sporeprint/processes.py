"""Services and RQ workers as child processes: used by ``make demo`` and the test fixtures.

Each process gets the SPOREPRINT_* environment it should see, logs to a file, and is
stopped by its own PID (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sporeprint.stack import StackError, free_port

logger = logging.getLogger(__name__)


@dataclass
class ManagedProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, self.pid)
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL, as a crash would (tests of resume after a worker dies)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child process
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
    return proc, log_path


def start_service(
    name: str, app: str, env: dict[str, str], log_dir: Path, port: int = 0, ready_path: str = "/health",
    timeout: float = 60,
) -> ManagedProcess:
    """Run ``app`` (``module:attribute``) under uvicorn and wait until ``ready_path`` answers 200."""
    port = port or free_port()
    args = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log"]
    proc, log_path = spawn(name, args, env, log_dir)
    service = ManagedProcess(name, proc, log_path, port, env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise StackError(f"{name} exited with {proc.returncode}:\n{service.log_tail()}")
        try:
            if httpx.get(f"{service.url}{ready_path}", timeout=1).status_code == 200:
                return service
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    service.stop()
    raise StackError(f"{name} did not answer {ready_path} within {timeout:.0f} s:\n{service.log_tail()}")


def start_worker(name: str, queues: list[str], env: dict[str, str], log_dir: Path) -> ManagedProcess:
    """An RQ worker process listening on ``queues`` (Redis URL from SPOREPRINT_REDIS_URL)."""
    args = [sys.executable, "-m", "shared.worker", *queues]
    proc, log_path = spawn(name, args, env, log_dir)
    return ManagedProcess(name, proc, log_path, None, env)
