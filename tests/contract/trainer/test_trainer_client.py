"""The shared trainer client (what the demo calls) against the real trainer app under uvicorn, the real S3 server
and Redis: a job submitted, read and cancelled (no worker runs), the registry, and refusals."""

from __future__ import annotations

import pytest

from fixtureweb.harvested import write_synthetic_manifest
from shared.clients.trainer import TrainerClient
from shared.queue import JobState
from shared.training import TrainingJobSpec
from tests.contract.conftest import refusal

pytestmark = pytest.mark.contract


def test_submit_read_cancel_a_job(client_of, store) -> None:
    trainer = client_of(TrainerClient)
    info = write_synthetic_manifest(store, "fungi", n_classes=2, images_per_class=12, size=32)
    spec = TrainingJobSpec.model_validate({
        "data": {"dataset": "fungi", "image_size": 32, "min_images_per_class": 5},
        "backbone": {"name": "tiny_cnn", "weights": "none"}, "epochs": 1,
    })
    accepted = trainer.submit_job(spec)
    assert accepted.manifest_version == info.version and len(accepted.classes) == 2  # pinned to the latest
    assert accepted.model_id == accepted.job_id
    assert trainer.job(accepted.job_id).state is JobState.queued
    assert trainer.cancel_job(accepted.job_id).state is JobState.cancelled
    assert trainer.models() == []  # nothing trained, nothing in the registry


def test_refusals_carry_the_services_detail(client_of) -> None:
    trainer = client_of(TrainerClient)
    assert refusal(lambda: trainer.job("m-no-such-job")) == (404, "job not found")
    assert refusal(lambda: trainer.promote("m-no-such-model")) == (404, "model not found")
    status, detail = refusal(lambda: trainer.submit_job({"data": {"dataset": "nothing-here"}}))
    assert status == 422 and "nothing-here" in detail
