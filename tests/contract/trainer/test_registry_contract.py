"""The registry contract the inference service relies on (shared/registry.py), checked on a really trained model.

The consumer side is done the way inference does it: read the promoted pointer and the card through
``ModelRegistry``, fetch ``model.keras``, load it with plain Keras (no sporeprint code), feed float32 RGB in
[0, 255] of ``card.image_size`` and read softmax probabilities in ``card.classes`` order.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from fixtureweb.harvested import write_synthetic_manifest
from services.trainer.task import TrainingRun
from shared import openset
from shared.contract import SCHEMA_DIR
from shared.registry import ModelCard, ModelRegistry, ModelStatus
from shared.storage import ObjectStore
from shared.training import TrainingJobSpec

pytestmark = [pytest.mark.contract, pytest.mark.ml]


def test_a_trained_model_honours_the_registry_contract(store: ObjectStore, tmp_path: Path) -> None:
    info = write_synthetic_manifest(store, "contract", n_classes=3, images_per_class=18, size=32)
    spec = TrainingJobSpec.model_validate({
        "data": {"dataset": "contract", "manifest_version": info.version, "image_size": 32, "min_images_per_class": 5},
        "backbone": {"name": "tiny_cnn", "weights": "none"}, "optimizer": {"learning_rate": 3e-3},
        "epochs": 3, "batch_size": 16, "export": {"saved_model": False, "tflite_float16": False},
        "auto_promote": True,
    })
    TrainingRun(spec, "m-contract-1", store, tmp_path / "work").run()

    registry = ModelRegistry(store)
    pointer = registry.promoted()
    assert pointer is not None and pointer.model_id == "m-contract-1"  # auto-promoted: nothing was before
    card = registry.card(pointer.model_id)
    assert card.status is ModelStatus.complete and "model.keras" in card.artifacts
    assert card.dataset == "contract" and card.manifest_version == info.version and card.image_size == 32
    assert [label.index for label in card.classes] == list(range(3))
    # The card in the bucket validates against the committed JSON Schema's fields (what non-Python readers use).
    raw = store.get_json("models/m-contract-1/card.json")
    schema = json.loads((SCHEMA_DIR / "ModelCard.schema.json").read_text())
    assert set(raw) <= set(schema["properties"]) and set(schema["required"]) <= set(raw)
    assert ModelCard.model_validate(raw) == card
    labels = store.get_json("models/m-contract-1/labels.json")
    assert [entry["name"] for entry in labels["classes"]] == [label.name for label in card.classes]

    path = store.get_file("models/m-contract-1/model.keras", tmp_path / "model.keras")
    model = keras.models.load_model(path)
    assert model.input_shape == (None, card.image_size, card.image_size, 3)
    assert model.output_shape == (None, len(card.classes))
    jpeg = store.get_bytes(next(iter(store.list("images/synthetic/contract/"))))
    image = Image.open(io.BytesIO(jpeg)).convert("RGB").resize((card.image_size, card.image_size))
    batch = np.asarray(image, dtype="float32")[None]  # float32 RGB in [0, 255]: no scaling by the caller
    # The model outputs logits; the card carries the temperature that calibrates them and the open-set bank.
    assert card.output == "logits" and card.openset is not None and "openset.npz" in card.artifacts
    probabilities = openset.softmax(model.predict(batch, verbose=0), card.openset.temperature)
    assert probabilities.shape == (1, len(card.classes))
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-4) and (probabilities >= 0).all()
