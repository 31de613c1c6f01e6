"""Trainer (provider) -> inference (consumer): a model trained and promoted by the trainer's real code is
loaded by the inference service's real loader and served by the running service."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from fixtureweb import SpeciesCatalog
from fixtureweb.harvested import write_synthetic_manifest
from services.inference.model import load_served_model
from services.trainer.task import TrainingRun
from shared.processes import ManagedProcess
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.storage import ObjectStore
from shared.training import TrainingJobSpec

pytestmark = [pytest.mark.contract, pytest.mark.ml]


def _train(store: ObjectStore, work: Path, model_id: str) -> None:
    info = write_synthetic_manifest(store, "pipeline", n_classes=3, images_per_class=18, size=32)
    spec = TrainingJobSpec.model_validate({
        "data": {"dataset": "pipeline", "manifest_version": info.version, "image_size": 32,
                 "min_images_per_class": 5},
        "backbone": {"name": "tiny_cnn", "weights": "none"}, "optimizer": {"learning_rate": 3e-3},
        "epochs": 2, "batch_size": 16, "export": {"saved_model": False, "tflite_float16": False},
    })
    TrainingRun(spec, model_id, store, work).run()


def test_trained_model_is_served(
    store: ObjectStore, settings: Settings, tmp_path: Path, run_service: Callable[..., ManagedProcess]
) -> None:
    _train(store, tmp_path / "work", "m-pipeline-1")
    registry = ModelRegistry(store)
    registry.promote("m-pipeline-1", by="contract-test")

    served = load_served_model(registry, "m-pipeline-1")  # the consumer's loader, smoke test included
    card = registry.card("m-pipeline-1")
    assert served.card.model_id == "m-pipeline-1" and served.card.classes == card.classes

    inference = run_service("inference", "services.inference.main:app", settings,
                            {"SPOREPRINT_INFERENCE_POLL_INTERVAL_S": "0.5"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        model = httpx.get(f"{inference.url}/model")
        if model.status_code == 200:
            break
        time.sleep(0.5)
    assert model.status_code == 200, inference.log_tail()
    assert model.json()["model_id"] == "m-pipeline-1"
    assert model.json()["manifest_version"] == card.manifest_version

    photo = io.BytesIO()
    SpeciesCatalog(3, 0).render(0, 123_456, 96).convert("RGB").save(photo, "JPEG")
    answer = httpx.post(f"{inference.url}/predict", files={"file": ("p.jpg", photo.getvalue(), "image/jpeg")})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_id"] == "m-pipeline-1"
    labels = {label.name for label in card.classes}
    assert all(prediction["label"] in labels for prediction in body["predictions"])
    assert body["safety_notice"]
