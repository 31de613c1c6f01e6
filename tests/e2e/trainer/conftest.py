"""The trainer against the real stack: its API under uvicorn, RQ `train` workers as processes, the real S3 server.

One bucket, one synthetic dataset and one API process per module (each test module pays TensorFlow's start-up
once); workers are started per test, because some tests kill them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtureweb.harvested import write_synthetic_manifest
from shared.settings import Environment, Settings
from shared.storage import ObjectStore
from sporeprint.processes import ManagedProcess, start_service
from sporeprint.stack import StackState

TOKEN = "trainer-e2e-" + uuid.uuid4().hex
DATASET = "synthetic-fungi"
IMAGE_SIZE = 32


def stack_settings(stack: StackState, work_dir: Path) -> Settings:
    return Settings(
        environment=Environment.test, s3_endpoint=stack.s3_endpoint, s3_access_key=stack.access_key,
        s3_secret_key=stack.secret_key, s3_bucket=f"tr-{uuid.uuid4().hex[:12]}", redis_url=stack.redis_url,
        api_token=TOKEN, work_dir=str(work_dir),
    )


def env_of(settings: Settings) -> dict[str, str]:
    return {f"SPOREPRINT_{name.upper()}": str(value)
            for name, value in settings.model_dump(mode="json").items() if value is not None}


@pytest.fixture(scope="module")
def trainer_settings(stack: StackState, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return stack_settings(stack, tmp_path_factory.mktemp("trainer-work"))


@pytest.fixture(scope="module")
def trainer_store(trainer_settings: Settings) -> ObjectStore:
    store = ObjectStore.from_settings(trainer_settings)
    store.ensure_bucket()
    return store


@pytest.fixture(scope="module")
def dataset_version(trainer_store: ObjectStore) -> int:
    """4 synthetic species x 32 photos (3 per observation) at 32 px, plus a failed and an excluded row."""
    return write_synthetic_manifest(trainer_store, DATASET, n_classes=4, images_per_class=32, size=IMAGE_SIZE).version


@pytest.fixture(scope="module")
def trainer_api(trainer_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    service = start_service("trainer-api", "services.trainer.main:app", env_of(trainer_settings),
                            tmp_path_factory.mktemp("trainer-logs"))
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def client(trainer_api: ManagedProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=trainer_api.url, timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield http


def start_train_worker(settings: Settings, name: str, log_dir: Path) -> ManagedProcess:
    """The trainer's worker entry point: shared.worker with TensorFlow preloaded before RQ forks."""
    env = env_of(settings)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "services.trainer.worker", "train"], stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                                start_new_session=True)
    return ManagedProcess(name, proc, log_path, None, env)


@pytest.fixture
def train_worker(trainer_settings: Settings, tmp_path: Path) -> Iterator[Callable[[], ManagedProcess]]:
    """Start RQ workers on the `train` queue (as many as the test asks for); all stopped at teardown."""
    started: list[ManagedProcess] = []

    def start() -> ManagedProcess:
        worker = start_train_worker(trainer_settings, f"train-worker-{len(started)}", tmp_path / "logs")
        started.append(worker)
        return worker

    yield start
    for worker in reversed(started):
        worker.stop()


@pytest.fixture(scope="module")
def shared_worker(trainer_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """One worker for the tests of a module that do not kill theirs (TensorFlow starts once)."""
    worker = start_train_worker(trainer_settings, "train-worker-shared", tmp_path_factory.mktemp("worker-logs"))
    try:
        yield worker
    finally:
        worker.stop()


def small_spec(version: int, **changes: Any) -> dict[str, Any]:
    """A spec that trains the tiny CNN on the synthetic species in seconds."""
    spec: dict[str, Any] = {
        "name": "e2e",
        "data": {"dataset": DATASET, "manifest_version": version, "image_size": IMAGE_SIZE,
                 "min_images_per_class": 5},
        "backbone": {"name": "tiny_cnn", "weights": "none"},
        "head": {"dropout": 0.1},
        "optimizer": {"learning_rate": 3e-3},
        "batch_size": 16,
        "epochs": 10,
        "augmentation": {"rotation": 20, "flip_horizontal": True, "zoom": 0, "brightness": 0, "contrast": 0},
        "callbacks": {"early_stopping": {"enabled": False}},
        "export": {"saved_model": False, "tflite_float16": False},
    }
    for key, value in changes.items():
        spec[key] = value
    return spec


def wait_for(client: httpx.Client, job_id: str, done: Callable[[dict[str, Any]], bool],
             worker: ManagedProcess | None = None, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"/jobs/{job_id}").json()
        if done(body):
            return body
        if worker is not None and not worker.alive():
            pytest.fail(f"worker died:\n{worker.log_tail()}")
        time.sleep(0.1)
    pytest.fail(f"job {job_id} never reached the awaited state; last: {body}\n"
                f"{worker.log_tail() if worker else ''}")


def finished(body: dict[str, Any]) -> bool:
    return body["state"] in ("completed", "failed", "cancelled")


@pytest.fixture
def spec_for(dataset_version: int) -> Callable[..., dict[str, Any]]:
    return lambda **changes: small_spec(dataset_version, **changes)


@pytest.fixture
def wait_job(client: httpx.Client) -> Callable[..., dict[str, Any]]:
    def wait(job_id: str, done: Callable[[dict[str, Any]], bool] = finished,
             worker: ManagedProcess | None = None, timeout: float = 180) -> dict[str, Any]:
        return wait_for(client, job_id, done, worker, timeout)

    return wait
