"""Job lifecycle against real worker processes: crash and resume, cancellation, failure."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from redis import Redis

from shared.queue import fetch_job
from shared.settings import Settings
from shared.storage import ObjectStore
from sporeprint.processes import ManagedProcess

pytestmark = [pytest.mark.e2e, pytest.mark.ml]


def test_a_job_whose_worker_is_killed_resumes_from_its_last_checkpointed_epoch(
    client: httpx.Client, train_worker: Callable[[], ManagedProcess], spec_for: Callable[..., dict[str, Any]],
    wait_job: Callable[..., dict[str, Any]], trainer_settings: Settings, trainer_store: ObjectStore,
    request: pytest.FixtureRequest,
) -> None:
    epochs = 12
    first = train_worker()
    job_id = client.post("/jobs", json=spec_for(name="crash", epochs=epochs)).json()["job_id"]
    wait_job(job_id, lambda body: body["state"] == "running" and body["epoch"] >= 2, worker=first)

    # kill -9 the worker and its work horse (the process that trains), as a lost machine would
    job = fetch_job(Redis.from_url(trainer_settings.redis_url), job_id)
    assert job is not None
    horse = job.meta["progress"]["pid"]
    first.kill()
    os.kill(horse, signal.SIGKILL)
    checkpointed = trainer_store.get_json(f"models/{job_id}/checkpoint/state.json")["epoch"]
    assert 2 <= checkpointed < epochs
    orphan = client.get(f"/jobs/{job_id}").json()
    assert orphan["state"] == "running"  # RQ cannot know yet that its worker is gone

    refused = client.post(f"/jobs/{job_id}/requeue")
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith("job cannot do that now: job is running")
    assert client.post(f"/jobs/{job_id}/requeue", params={"force": True}).status_code == 202

    # A new worker picks it up: the module's shared worker, started only now (it serves the next tests too).
    second: ManagedProcess = request.getfixturevalue("shared_worker")
    body = wait_job(job_id, worker=second)
    assert body["state"] == "completed", (body["error"], second.log_tail())
    assert body["resumed_from_epoch"] == checkpointed
    assert [row["epoch"] for row in body["history"]] == list(range(1, epochs + 1))
    assert any(f"resuming {job_id} after epoch {checkpointed}" in line for line in body["log_tail"]), body["log_tail"]
    assert client.get(f"/models/{job_id}").json()["card"]["status"] == "complete"


def test_cancel_a_queued_and_a_running_job(
    client: httpx.Client, shared_worker: ManagedProcess, spec_for: Callable[..., dict[str, Any]],
    wait_job: Callable[..., dict[str, Any]],
) -> None:
    # Runs after the crash test (file order): the shared worker must not be there to take the orphaned job.
    worker = shared_worker
    running = client.post("/jobs", json=spec_for(name="long", epochs=500)).json()["job_id"]
    queued = client.post("/jobs", json=spec_for(name="behind")).json()["job_id"]  # one worker: it waits
    progress = wait_job(running, lambda body: body["state"] == "running" and body["epoch"] >= 1, worker=worker)
    assert progress["eta_seconds"] > 0 and progress["epochs"] == 500 and progress["history"]

    assert client.get(f"/jobs/{queued}").json()["state"] == "queued"
    assert client.delete(f"/jobs/{queued}").json()["state"] == "cancelled"

    response = client.delete(f"/jobs/{running}")
    assert response.status_code == 200, response.text
    body = wait_job(running, lambda body: body["state"] == "cancelled", worker=worker)
    assert body["epoch"] < 500
    card = client.get(f"/models/{running}").json()["card"]
    assert card["status"] == "failed" and card["error"] == "canceled"
    refused = client.post(f"/models/{running}/promote")
    assert refused.status_code == 409 and refused.json()["detail"].startswith("promotion refused")

    again = client.delete(f"/jobs/{running}")
    assert again.status_code == 409 and again.json()["detail"] == "job cannot do that now: job is already cancelled"
    assert client.delete("/jobs/m-unknown-job").status_code == 404
    assert client.post(f"/jobs/{running}/requeue").status_code == 409  # canceled stays canceled
    assert httpx.delete(f"{client.base_url}/jobs/{queued}").status_code == 401  # no token
    assert worker.alive(), "stopping a job must not stop its worker"


def test_a_job_that_fails_in_the_worker_is_marked_failed_with_its_error(
    client: httpx.Client, shared_worker: ManagedProcess, spec_for: Callable[..., dict[str, Any]],
    wait_job: Callable[..., dict[str, Any]],
) -> None:
    worker = shared_worker  # the same worker as the cancel test: stopping a job left it serving
    spec = spec_for(name="no weights", backbone={"name": "resnet50", "weights": "/nonexistent/resnet50.h5"})
    job_id = client.post("/jobs", json=spec).json()["job_id"]
    body = wait_job(job_id, worker=worker)
    assert body["state"] == "failed"
    assert "/nonexistent/resnet50.h5" in body["error"]
    card = client.get(f"/models/{job_id}").json()["card"]
    assert card["status"] == "failed" and "/nonexistent/resnet50.h5" in card["error"]
