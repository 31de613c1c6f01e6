"""The workers' liveness probe (``python -m shared.worker_probe``) against a real RQ worker and the real Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.settings import Settings
from sporeprint.processes import start_worker

from .conftest import env_of

pytestmark = pytest.mark.e2e


def probe(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared.worker_probe", *args], capture_output=True, text=True,
                          env={**os.environ, **env_of(settings)}, timeout=60, check=False)


def test_the_probe_passes_while_this_hosts_worker_heartbeats_and_fails_without_it(
    trainer_settings: Settings, tmp_path: Path,
) -> None:
    # another host's worker does not count (a pod only sees its own host name)
    assert probe(trainer_settings, "--hostname", "no-such-host").returncode == 1
    worker = start_worker("probe-worker", ["train"], env_of(trainer_settings), tmp_path / "logs")
    try:
        deadline = time.monotonic() + 60
        result = probe(trainer_settings)
        while result.returncode != 0 and time.monotonic() < deadline:
            assert worker.alive(), worker.log_tail()
            time.sleep(0.5)
            result = probe(trainer_settings)
        assert result.returncode == 0, result.stderr
        assert probe(trainer_settings, "--hostname", socket.gethostname()).returncode == 0
        stale = probe(trainer_settings, "--max-age", "0")  # a heartbeat is never 0 s old: as if it were wedged
        assert stale.returncode == 1 and "last sent a heartbeat" in stale.stderr
    finally:
        worker.stop()


def test_redis_out_of_reach_is_not_the_workers_fault(trainer_settings: Settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    away = trainer_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    result = probe(away)
    assert result.returncode == 0 and "not the worker's fault" in result.stderr
