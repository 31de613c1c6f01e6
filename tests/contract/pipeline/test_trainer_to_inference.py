"""Trainer (provider) -> inference (consumer): a model trained and promoted by the trainer's real code is
loaded by the inference service's real loader and served by the running service, asked through the shared
inference client (what the demo calls)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fixtureweb import SpeciesCatalog
from fixtureweb.harvested import write_synthetic_manifest
from services.inference.model import load_served_model
from services.trainer.task import TrainingRun
from shared.clients import ServiceUnavailable
from shared.clients.inference import InferenceClient
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.storage import ObjectStore
from shared.training import TrainingJobSpec
from sporeprint.processes import ManagedProcess

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
    service = run_service("inference", "services.inference.main:app", settings,
                          {"SPOREPRINT_INFERENCE_POLL_INTERVAL_S": "0.5"})
    photo = io.BytesIO()
    SpeciesCatalog(3, 0).render(0, 123_456, 96).convert("RGB").save(photo, "JPEG")
    with InferenceClient(service.url) as inference:
        assert not inference.ready().ready  # nothing promoted yet: 503, read as an answer
        with pytest.raises(ServiceUnavailable) as no_model:
            inference.predict(photo.getvalue())
        assert no_model.value.status == 503

        _train(store, tmp_path / "work", "m-pipeline-1")
        registry = ModelRegistry(store)
        registry.promote("m-pipeline-1", by="contract-test")
        served = load_served_model(registry, "m-pipeline-1")  # the consumer's loader, smoke test included
        card = registry.card("m-pipeline-1")
        assert served.card.model_id == "m-pipeline-1" and served.card.classes == card.classes

        deadline = time.monotonic() + 60
        while not inference.ready().ready and time.monotonic() < deadline:
            time.sleep(0.5)
        model = inference.model()
        assert (model.model_id, model.manifest_version) == ("m-pipeline-1", card.manifest_version), service.log_tail()
        assert model.classes == card.classes

        answer = inference.predict(photo.getvalue())
        assert answer.model_id == "m-pipeline-1"
        labels = {label.name for label in card.classes}
        assert all(prediction.label in labels for prediction in answer.predictions)
        assert answer.safety_notice
