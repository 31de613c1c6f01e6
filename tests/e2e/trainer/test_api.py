"""The trainer API in-process against the real S3 server and Redis (no worker): validation, auth, promotion."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from services.trainer.main import create_app
from services.trainer.promotion import maybe_auto_promote
from shared.manifests import RECORD_SCHEMA, ManifestStore
from shared.queue import QueueName, get_queue
from shared.registry import ClassLabel, ModelCard, ModelRegistry, ModelStatus
from shared.schemas import Operation
from shared.settings import Settings
from shared.storage import ObjectStore

pytestmark = pytest.mark.e2e


def rows(per_class: dict[str, int], photos_per_observation: int = 2) -> pa.Table:
    out: list[dict[str, Any]] = []
    for species, count in per_class.items():
        genus = species.split()[0]
        for index in range(count):
            image_id = f"{species.replace(' ', '-')}-{index}"
            out.append({
                "image_id": image_id, "observation_id": f"{genus}-{species}-{index // photos_per_observation}",
                "source": "csv", "species": species, "genus": genus, "family": "Testaceae",
                "url": f"http://example.test/{image_id}.jpg", "domain": "example.test", "status": "ok",
                "storage_key": f"images/test/{image_id}.jpg",
            })
    return pa.Table.from_pylist(out, schema=RECORD_SCHEMA)


@pytest.fixture
def api(settings: Settings, store: ObjectStore, override_settings: Callable[[object, Settings], None]
        ) -> Iterator[TestClient]:
    app = create_app()
    override_settings(app, settings)
    with TestClient(app, headers={"Authorization": f"Bearer {settings.api_token}"}) as client:
        yield client
    # No worker runs here: drop what these tests queued, so that no later worker trains it.
    with Redis.from_url(settings.redis_url) as connection:
        get_queue(QueueName.train, connection).empty()


@pytest.fixture
def version(manifests: ManifestStore) -> int:
    return manifests.write("fungi", rows({"Amanita muscaria": 20, "Boletus edulis": 20, "Cantharellus cibarius": 20}),
                           Operation.harvest).version


def spec(**data: Any) -> dict[str, Any]:
    return {"data": {"dataset": "fungi", "image_size": 32, "min_images_per_class": 4, **data},
            "backbone": {"name": "tiny_cnn", "weights": "none"}, "epochs": 2}


def test_a_valid_spec_is_queued_with_its_manifest_version_pinned(api: TestClient, version: int) -> None:
    response = api.post("/jobs", json=spec())
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["manifest_version"] == version
    assert accepted["classes"] == ["Amanita muscaria", "Boletus edulis", "Cantharellus cibarius"]
    assert sum(accepted["split_sizes"].values()) == 60
    job = api.get(f"/jobs/{accepted['job_id']}").json()
    assert job["state"] == "queued"
    assert job["spec"]["data"]["manifest_version"] == version
    assert api.get(f"/jobs/{accepted['job_id']}").json()["model_id"] == accepted["job_id"]


@pytest.mark.parametrize(("body", "message"), [
    ({**spec(), "backbone": {"name": "resnet9000"}}, "tiny_cnn"),
    (spec(classes=[]), "classes must not be empty"),
    (spec(classes=["Amanita muscaria"]), "at least 2 classes"),
    (spec(classes=["Amanita muscaria", "Amanita muscaria"]), "unique"),
    (spec(split={"train": 0.5, "validation": 0.2, "test": 0.2}), "split fractions must sum to 1"),
    ({**spec(), "backbone": {"name": "inception_v3", "weights": "none"}}, "too small for inception_v3"),
    ({**spec(), "epochs": 0}, "greater than or equal to 1"),
    ({**spec(), "optimizer": {"learning_rate": -1}}, "greater than 0"),
    ({**spec(), "augmentation": {"rotation": 270}}, "less than or equal to 180"),
    ({**spec(), "colour": "blue"}, "Extra inputs are not permitted"),
    ({"backbone": {"name": "tiny_cnn"}}, "Field required"),
])
def test_bad_specs_are_refused_with_a_clear_422(api: TestClient, version: int, body: dict[str, Any],
                                                 message: str) -> None:
    response = api.post("/jobs", json=body)
    assert response.status_code == 422
    assert message in response.text


@pytest.mark.parametrize(("data", "detail"), [
    ({"manifest_version": 99}, "manifest version not found: dataset 'fungi' has no version 99"),
    ({"dataset": "no-such-dataset"}, "manifest version not found: dataset 'no-such-dataset' has no manifest"),
    ({"classes": ["Amanita muscaria", "Russula emetica"]}, "dataset unusable for this spec: classes not in"),
    ({"min_images_per_class": 50}, "dataset unusable for this spec: fewer than 2 classes have at least 50"),
])
def test_specs_the_manifest_cannot_satisfy_are_refused(api: TestClient, version: int, data: dict[str, Any],
                                                       detail: str) -> None:
    response = api.post("/jobs", json=spec(**data))
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(detail)


def test_a_dataset_too_small_for_the_split_is_refused(api: TestClient, manifests: ManifestStore) -> None:
    # Two observations of Boletus: train, validation and test cannot each get one.
    manifests.write("fungi", rows({"Amanita muscaria": 20, "Boletus edulis": 4}), Operation.harvest)
    response = api.post("/jobs", json=spec(classes=["Amanita muscaria", "Boletus edulis"]))
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("dataset unusable for this spec: class 'Boletus edulis' has 2 observations")


def test_mutations_need_the_token(api: TestClient, version: int) -> None:
    assert api.post("/jobs", json=spec(), headers={"Authorization": ""}).status_code == 401
    assert api.post("/jobs", json=spec(), headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert api.post("/sweeps", json={"base": spec(), "grid": {"epochs": [1]}},
                    headers={"Authorization": ""}).status_code == 401
    assert api.post("/models/m-whatever/promote", headers={"Authorization": ""}).status_code == 401
    assert api.delete("/jobs/m-whatever", headers={"Authorization": ""}).status_code == 401


@pytest.mark.parametrize(("grid", "message"), [
    ({"optimizer.momentum": [0.9]}, "unknown spec path 'optimizer.momentum'"),
    ({"optimizer.learning_rate": [1e-3, -1]}, "is not a valid spec"),
    ({"optimizer.learning_rate": []}, "has no values"),
    ({}, "grid must name at least one spec path"),
    ({"epochs": list(range(1, 10)), "batch_size": [8, 16, 32, 64]}, "at most 32 per sweep"),
])
def test_bad_sweeps_are_refused(api: TestClient, version: int, grid: dict[str, Any], message: str) -> None:
    response = api.post("/sweeps", json={"base": spec(), "grid": grid})
    assert response.status_code == 422
    assert message in response.text


def test_a_sweep_queues_one_job_per_grid_point(api: TestClient, version: int) -> None:
    response = api.post("/sweeps", json={"base": spec(), "grid": {"optimizer.learning_rate": [1e-3, 1e-4],
                                                                   "data.images_per_class": [10, 20]}})
    assert response.status_code == 202, response.text
    sweep = api.get(f"/sweeps/{response.json()['sweep_id']}").json()
    assert len(sweep["rows"]) == 4 and {row["state"] for row in sweep["rows"]} == {"queued"}
    assert sweep["best_job_id"] is None
    listed = {row["sweep_id"]: row for row in api.get("/sweeps").json()}
    assert listed[sweep["sweep_id"]]["jobs"] == 4 and listed[sweep["sweep_id"]]["states"] == {"queued": 4}
    assert api.get("/sweeps", params={"limit": 0}).status_code == 422


def test_unknown_ids_answer_404(api: TestClient) -> None:
    assert api.get("/jobs/m-nope").json() == {"detail": "job not found"}
    assert api.get("/models/m-nope").json() == {"detail": "model not found"}
    assert api.get("/sweeps/s-nope").json() == {"detail": "sweep not found"}
    assert api.get("/models/promoted").json() == {"detail": "no model is promoted"}
    assert api.post("/models/m-nope/promote").status_code == 404
    assert api.get("/presets/nope", params={"dataset": "fungi"}).status_code == 404
    # ids that cannot be job, model or sweep ids are refused before any lookup (fuzzing once found a 500 here)
    for path in ("/jobs/X%F0%BE%A0%90", "/models/..", "/sweeps/UPPER", "/models/a/artifacts/model.keras"):
        assert api.get(path).status_code in (404, 422), path


def test_presets_are_valid_specs(api: TestClient) -> None:
    names = {preset["name"] for preset in api.get("/presets").json()}
    assert {"demo", "gpu"} <= names
    demo = api.get("/presets/demo", params={"dataset": "fungi"}).json()
    assert demo["backbone"]["name"] == "tiny_cnn" and demo["data"]["dataset"] == "fungi"


# --- promotion rules -------------------------------------------------------------------------------------

def card(model_id: str, status: ModelStatus = ModelStatus.complete, val_top1: float | None = 0.8,
         test_top1: float = 0.8, split: str = "split-a", artifacts: tuple[str, ...] = ("model.keras",),
         age: int = 0) -> ModelCard:
    metrics = {"top1": test_top1, **({"val_top1": val_top1} if val_top1 is not None else {})}
    return ModelCard(
        model_id=model_id, status=status, created_at=datetime.now(UTC) - timedelta(minutes=age), dataset="fungi",
        manifest_version=1, backbone="tiny_cnn", image_size=32,
        classes=[ClassLabel(index=0, name="a"), ClassLabel(index=1, name="b")],
        metrics=metrics, test_split_hash=split, artifacts=list(artifacts),
    )


def test_only_a_complete_model_with_its_keras_file_can_be_promoted(api: TestClient, store: ObjectStore) -> None:
    registry = ModelRegistry(store)
    registry.save_card(card("m-training", ModelStatus.training))
    registry.save_card(card("m-failed", ModelStatus.failed))
    registry.save_card(card("m-no-file", artifacts=()))
    registry.save_card(card("m-good"))
    for model_id in ("m-training", "m-failed", "m-no-file"):
        response = api.post(f"/models/{model_id}/promote")
        assert response.status_code == 409
        assert response.json()["detail"].startswith("promotion refused: model")
    assert api.get("/models/promoted").status_code == 404
    promoted = api.post("/models/m-good/promote")
    assert promoted.status_code == 200 and promoted.json()["model_id"] == "m-good"
    assert registry.promoted() is not None and registry.promoted().model_id == "m-good"  # type: ignore[union-attr]
    listed = {model["model_id"]: model["promoted"] for model in api.get("/models").json()}
    assert listed == {"m-training": False, "m-failed": False, "m-no-file": False, "m-good": True}


def test_auto_promotion_needs_a_better_validation_score_on_the_same_split(store: ObjectStore) -> None:
    registry = ModelRegistry(store)
    first = card("m-first", val_top1=0.7, test_top1=0.7)
    worse = card("m-worse", val_top1=0.6, test_top1=0.99)  # a better test score must not buy promotion
    other_split = card("m-other", val_top1=0.99, split="split-b")
    unknown = card("m-unknown", val_top1=None, test_top1=0.99)  # no validation figure: nothing fair to compare
    better = card("m-better", val_top1=0.9, test_top1=0.5)  # chosen on validation; its test score is reported
    for model in (first, worse, other_split, unknown, better):
        registry.save_card(model)
    assert maybe_auto_promote(registry, first)  # nothing promoted yet
    assert not maybe_auto_promote(registry, worse)
    assert not maybe_auto_promote(registry, other_split)
    assert not maybe_auto_promote(registry, unknown)
    assert registry.promoted().model_id == "m-first"  # type: ignore[union-attr]
    assert maybe_auto_promote(registry, better)
    pointer = registry.promoted()
    assert pointer is not None and pointer.model_id == "m-better" and pointer.promoted_by == "auto-promote"


def test_old_cards_without_val_top1_compare_on_best_val_accuracy(store: ObjectStore) -> None:
    registry = ModelRegistry(store)
    old = card("m-old", val_top1=None, test_top1=0.9).model_copy(
        update={"metrics": {"top1": 0.9, "best_val_accuracy": 0.75}})
    assert old.output == "probabilities" and old.openset is None  # the defaults for cards from before
    registry.save_card(old)
    registry.promote("m-old")
    worse, better = card("m-new-worse", val_top1=0.7), card("m-new-better", val_top1=0.8)
    for model in (worse, better):
        registry.save_card(model)
    assert not maybe_auto_promote(registry, worse)
    assert maybe_auto_promote(registry, better)
