"""Nobody runs code on a worker through Redis: every queue and job is JSON (shared.queue.JobSerializer), so a
pickled payload planted in a queue by whoever can reach Redis is refused without running. Real Redis, a real
``python -m shared.worker`` process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue

from shared.queue import JobSerializer, QueueName, fetch_job
from shared.settings import Settings
from tests.conftest import settings_env

pytestmark = pytest.mark.e2e


class _RunsCode:
    """Unpickling this runs a shell command: what a planted RQ job would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_a_planted_pickle_is_refused_without_running(settings: Settings, tmp_path: Path) -> None:
    marker = tmp_path / "the-payload-ran"
    redis = Redis.from_url(settings.redis_url)
    queue_name = QueueName.curate.value
    Queue(queue_name, connection=redis).delete(delete_jobs=True)
    # RQ's default (pickle) serializer, as an attacker with access to Redis would use it
    planted = Queue(queue_name, connection=redis).enqueue(print, _RunsCode(marker), job_id="planted")
    assert marker.exists() is False
    result = subprocess.run([sys.executable, "-m", "shared.worker", queue_name, "--burst"],
                            env={**os.environ, **settings_env(settings)}, capture_output=True, text=True,
                            timeout=120, check=False)
    assert not marker.exists(), "the worker unpickled the planted job and ran its code"
    assert "planted" in result.stdout + result.stderr, "the worker saw the job and said it refused it"
    assert fetch_job(redis, planted.id) is None or fetch_job(redis, planted.id).get_status() != "finished"


def test_jobs_round_trip_as_json(settings: Settings) -> None:
    import numpy as np

    data = JobSerializer.dumps({"loss": np.float32(0.5), "shape": np.arange(3), "n": np.int64(4)})
    assert JobSerializer.loads(data) == {"loss": 0.5, "shape": [0, 1, 2], "n": 4}
    with pytest.raises(TypeError, match="must be JSON"):
        JobSerializer.dumps({"x": object()})
