"""The inference service against the registry contract (shared/registry.py), on the real S3 server.

The trainer writes ``models/<id>/model.keras`` + ``card.json`` and moves ``models/promoted.json``; here a
model is written exactly that way and loaded with the service's own loader, checking the model I/O contract
(float32 RGB [0, 255] in, softmax in ModelCard.classes order out) and the refusals.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from services.inference.model import ModelRefused, load_served_model
from shared.registry import PROMOTED_KEY, ClassLabel, ModelCard, ModelRegistry, ModelStatus, model_key
from shared.storage import ObjectStore

pytestmark = [pytest.mark.contract, pytest.mark.ml]

SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "jsonschema"
CLASSES = [ClassLabel(index=i, name=f"Genus{i // 2} species{i}", species=f"Genus{i // 2} species{i}",
                      genus=f"Genus{i // 2}", family="Testaceae") for i in range(4)]


def tiny_model(path: Path, size: int, outputs: int = 4, softmax: bool = True) -> Path:
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((size, size, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(4, 3),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(outputs, activation="softmax" if softmax else None),
    ])
    model.save(path)
    return path


def publish(store: ObjectStore, model_id: str, path: Path, image_size: int) -> None:
    store.put_file(model_key(model_id, "model.keras"), path)
    ModelRegistry(store).save_card(ModelCard(
        model_id=model_id, status=ModelStatus.complete, created_at=datetime.now(UTC), dataset="contract",
        manifest_version=7, backbone="tiny", image_size=image_size, classes=CLASSES, metrics={"top1": 0.5},
        artifacts=["model.keras", "card.json"],
    ))
    ModelRegistry(store).promote(model_id, by="contract-test")


def test_a_model_written_per_contract_loads_and_predicts(store: ObjectStore, tmp_path: Path) -> None:
    publish(store, "contract-good", tiny_model(tmp_path / "m.keras", 32), image_size=32)
    card_json = json.loads(store.get_bytes(model_key("contract-good", "card.json")))
    pointer_json = json.loads(store.get_bytes(PROMOTED_KEY))
    jsonschema.validate(card_json, json.loads((SCHEMAS / "ModelCard.schema.json").read_text()))
    jsonschema.validate(pointer_json, json.loads((SCHEMAS / "PromotedPointer.schema.json").read_text()))

    registry = ModelRegistry(store)
    pointer = registry.promoted()
    assert pointer is not None and pointer.model_id == "contract-good"
    served = load_served_model(registry, pointer.model_id, pointer.promoted_at)
    assert [c.name for c in served.card.classes] == [c.name for c in CLASSES]
    batch = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    probs = served.predict(batch)
    assert probs.shape == (3, 4) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(probs, np.asarray(served.keras_model(batch)), atol=1e-5)  # the compiled graph = the model


@pytest.mark.parametrize(
    ("model_kwargs", "card_size", "reason"),
    [
        ({"size": 32, "outputs": 3}, 32, "answered shape"),  # card lists 4 classes
        ({"size": 32, "softmax": False}, 32, "does not output softmax"),
        ({"size": 48}, 32, "takes input shape"),  # the input size differs from the card's image_size
    ],
)
def test_models_that_break_the_contract_are_refused(store: ObjectStore, tmp_path: Path, model_kwargs: dict,
                                                    card_size: int, reason: str) -> None:
    publish(store, "contract-bad", tiny_model(tmp_path / "m.keras", **model_kwargs), image_size=card_size)
    with pytest.raises(ModelRefused, match=reason):
        load_served_model(ModelRegistry(store), "contract-bad")


def test_missing_files_are_refused(store: ObjectStore) -> None:
    with pytest.raises(ModelRefused, match="no readable card"):
        load_served_model(ModelRegistry(store), "never-trained")
    store.put_bytes(model_key("half-written", "card.json"), b"{}")
    with pytest.raises(ModelRefused, match="no readable card"):
        load_served_model(ModelRegistry(store), "half-written")
