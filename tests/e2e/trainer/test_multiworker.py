"""Two training workers on loopback (TF_CONFIG, MultiWorkerMirroredStrategy) train one model together; only the
chief (worker 0) writes it, once, to the real S3 server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from shared.settings import Settings
from shared.storage import ObjectStore

from .conftest import env_of, small_spec

pytestmark = [pytest.mark.e2e, pytest.mark.ml]

WORKERS = 2


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def test_two_workers_train_one_model_in_step_and_only_the_chief_writes_it(
    trainer_settings: Settings, trainer_store: ObjectStore, dataset_version: int, tmp_path: Path,
) -> None:
    spec = small_spec(dataset_version, name="multi-worker", epochs=2, batch_size=8, distribution="mirrored")
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    model_id = f"mw-{uuid.uuid4().hex[:10]}"
    addresses = [f"127.0.0.1:{port}" for port in free_ports(WORKERS)]
    processes: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / f"worker-{index}.log" for index in range(WORKERS)]
    work_dirs = [tmp_path / f"work-{index}" for index in range(WORKERS)]  # one disk per host
    for index in range(WORKERS):
        env = {**os.environ, **env_of(trainer_settings), "SPOREPRINT_WORK_DIR": str(work_dirs[index]),
               "SPOREPRINT_LOG_FORMAT": "text", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": "",
               "TF_CONFIG": json.dumps({"cluster": {"worker": addresses},
                                        "task": {"type": "worker", "index": index}})}
        with open(logs[index], "wb") as log:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "services.trainer.multiworker", "--spec", str(spec_path),
                 "--model-id", model_id], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
    deadline = time.monotonic() + 150
    try:
        while any(proc.poll() is None for proc in processes) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for proc in processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = [log.read_text(errors="replace") for log in logs]
    assert [proc.returncode for proc in processes] == [0, 0], "\n\n".join(part[-4000:] for part in text)

    # both took part, in one cluster of 2 replicas (one CPU each)
    assert "MultiWorkerMirroredStrategy, 2 replicas in sync, worker 0 of 2 (chief)" in text[0], text[0][-3000:]
    assert "MultiWorkerMirroredStrategy, 2 replicas in sync, worker 1 of 2 (worker)" in text[1], text[1][-3000:]
    # in step: every worker ran every epoch and saw the same all-reduced figures
    epochs = [[line.split(": ", 1)[1] for line in part.splitlines() if "services.trainer.task: epoch " in line]
              for part in text]
    assert len(epochs[0]) == 2 and epochs[0] == epochs[1], epochs
    assert "worker 1 of 2 (worker) finished training" in text[1]

    # the chief alone stored the model and registered it, once
    assert text[0].count(f"model {model_id} complete") == 1
    assert f"model {model_id} complete" not in text[1]
    card = trainer_store.get_json(f"models/{model_id}/card.json")
    assert card["status"] == "complete" and card["manifest_version"] == dataset_version
    assert "model.keras" in card["artifacts"] and trainer_store.exists(f"models/{model_id}/model.keras")
    distribution = trainer_store.get_json(f"models/{model_id}/distribution.json")
    assert distribution == {
        "strategy": "MultiWorkerMirroredStrategy", "replicas_in_sync": 2, "workers": 2,
        "per_replica_batch_size": 8, "global_batch_size": 16,
        "learning_rate": pytest.approx(2 * spec["optimizer"]["learning_rate"]), "fine_tune_learning_rate": None}
    assert not list(trainer_store.list(f"models/{model_id}/checkpoint/")), "the chief clears its checkpoints"
    # the other worker's checkpoints went to a temporary directory, removed when it finished
    assert not list(work_dirs[1].glob(f"{model_id}-worker-*"))
