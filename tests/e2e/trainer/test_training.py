"""A job submitted through the API and run by a real RQ worker process lands in the registry; a sweep compares."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import keras
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from shared import openset
from shared.openset import MahalanobisScorer, load_scorer
from shared.storage import ObjectStore
from sporeprint.processes import ManagedProcess

pytestmark = [pytest.mark.e2e, pytest.mark.ml]


def test_a_submitted_job_trains_well_above_chance_and_lands_in_the_registry(
    client: httpx.Client, shared_worker: ManagedProcess, spec_for: Callable[..., dict[str, Any]],
    wait_job: Callable[..., dict[str, Any]], trainer_store: ObjectStore, tmp_path: Path,
) -> None:
    worker = shared_worker
    spec = spec_for(name="quality", epochs=14, export={"saved_model": True, "tflite_float16": True},
                    callbacks={"early_stopping": {"patience": 6}})
    before = scrape(client)
    accepted = client.post("/jobs", json=spec)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    assert len(accepted.json()["classes"]) == 4
    assert accepted.json()["job_id"] in {job["job_id"] for job in client.get("/jobs").json()}

    body = wait_job(job_id, worker=worker)
    assert body["state"] == "completed", (body.get("error"), body["log_tail"], worker.log_tail())
    assert body["history"] and body["history"][0]["epoch"] == 1
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(body["history"][-1])
    assert any("epoch 1/" in line for line in body["log_tail"])
    # 4 classes: chance is 0.25
    assert body["metrics"]["top1"] >= 0.6, body["metrics"]
    assert_training_metrics(before, scrape(client), body["history"])

    models = {model["model_id"]: model for model in client.get("/models").json()}
    assert models[job_id]["status"] == "complete"
    assert models[job_id]["manifest_version"] == spec["data"]["manifest_version"]
    detail = client.get(f"/models/{job_id}").json()
    card = detail["card"]
    assert card["status"] == "complete" and card["test_split_hash"]
    assert [label["index"] for label in card["classes"]] == [0, 1, 2, 3]
    assert all(label["genus"] and label["family"] for label in card["classes"])
    for name in ("model.keras", "labels.json", "spec.json", "metrics.json", "history.json", "curves.png",
                 "confusion.png", "exports.json", "openset.npz", "calibration.json", "reliability.png"):
        assert name in card["artifacts"]
        assert trainer_store.exists(f"models/{job_id}/{name}")
    assert any(name.startswith("saved_model/") for name in card["artifacts"])
    metrics = detail["metrics"]
    assert set(metrics["per_class"]) == {label["name"] for label in card["classes"]}
    assert {"precision", "recall", "f1"} <= set(next(iter(metrics["per_class"].values())))
    assert 0 <= metrics["macro_f1"] <= 1 and metrics["top3"] >= metrics["top1"]
    exports = client.get(f"/models/{job_id}/artifacts/exports.json").json()
    assert exports["saved_model"] == "ok"
    assert exports["tflite_float16"] == "ok" or exports["tflite_float16"].startswith("failed")
    for plot in ("curves.png", "confusion.png"):
        response = client.get(f"/models/{job_id}/artifacts/{plot}")
        assert response.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(response.content)).size[0] > 100
    assert not list(trainer_store.list(f"models/{job_id}/checkpoint/")), "checkpoints are cleared when complete"
    assert_open_set_fitted(card, metrics, client, trainer_store, tmp_path)

    promoted = client.post(f"/models/{job_id}/promote")
    assert promoted.status_code == 200, promoted.text
    assert client.get("/models/promoted").json()["model_id"] == job_id
    assert client.get(f"/models/{job_id}").json()["promoted"] is True


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def assert_training_metrics(before: Samples, after: Samples, history: list[dict[str, Any]]) -> None:
    """What the worker wrote to Redis each epoch is on the trainer's /metrics: the last epoch's figures, epochs and
    jobs counted, the train queue (counters as differences: other tests of the session train on this Redis too)."""
    def added(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    last = history[-1]
    assert after[("sporeprint_redis_up", ())] == 1
    assert after[("sporeprint_training_epoch", ())] == last["epoch"]
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert after[(f"sporeprint_training_{name}", ())] == pytest.approx(last[name]), name
    assert after[("sporeprint_training_images_per_second", ())] > 0
    assert added("sporeprint_training_epochs_total", phase="head") + \
        added("sporeprint_training_epochs_total", phase="fine_tune") == len(history)
    assert added("sporeprint_training_jobs_total", state="completed") == 1
    assert after[("sporeprint_rq_workers", (("queue", "train"),))] >= 1
    assert ("sporeprint_rq_queued_jobs", (("queue", "train"),)) in after


def assert_open_set_fitted(card: dict[str, Any], metrics: dict[str, Any], client: httpx.Client,
                           store: ObjectStore, tmp_path: Path) -> None:
    """Logits out, the novelty scorer and calibration stored, thresholds fitted on validation, test only reported."""
    assert card["output"] == "logits"
    fitted = card["openset"]
    assert fitted["method"] == "mahalanobis" and fitted["fitted_on"].startswith("validation split of ")
    assert math.isfinite(fitted["threshold"]) and fitted["threshold"] > 0
    assert 0.85 <= fitted["id_validation_retained"] <= 1.0 and fitted["id_retention"] == 0.95
    assert fitted["temperature"] > 0 and 0 <= fitted["uncertain_below"] <= 1
    assert fitted["validation_images"] > 0 and fitted["feature_dim"] == 64  # tiny CNN's pool width
    assert set(fitted["comparison"]) == {"knn", "mahalanobis", "msp", "energy"}
    assert 0 < card["metrics"]["val_top1"] <= 1 and 0 <= card["metrics"]["test_ece"] <= 1
    assert 0 <= card["metrics"]["test_novelty_retained"] <= 1 and "test_ece" in metrics
    calibration = client.get(f"/models/{card['model_id']}/artifacts/calibration.json").json()
    assert calibration["temperature"] == pytest.approx(fitted["temperature"])
    assert sum(row["count"] for row in calibration["after"]) == fitted["validation_images"]
    png = client.get(f"/models/{card['model_id']}/artifacts/reliability.png")
    assert Image.open(io.BytesIO(png.content)).format == "PNG"

    # the stored scorer and the stored model agree with the card: a far-off input scores above the threshold
    scorer = load_scorer(store.get_file(f"models/{card['model_id']}/openset.npz", tmp_path / "openset.npz"))
    assert fitted["method"] == "mahalanobis" and isinstance(scorer, MahalanobisScorer)  # the default
    assert scorer.feature_dim == fitted["feature_dim"]
    model = keras.models.load_model(store.get_file(f"models/{card['model_id']}/model.keras", tmp_path / "m.keras"))
    features, logits = openset.embedding_model(model).predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0)
    assert features.shape == (1, fitted["feature_dim"]) and logits.shape == (1, len(card["classes"]))
    assert np.isfinite(scorer.score(features)).all()


def test_a_sweep_of_two_specs_produces_a_comparison_table_and_plot(
    client: httpx.Client, shared_worker: ManagedProcess, spec_for: Callable[..., dict[str, Any]],
    wait_job: Callable[..., dict[str, Any]],
) -> None:
    worker = shared_worker
    sweep = {"name": "lr", "base": spec_for(epochs=2), "grid": {"optimizer.learning_rate": [3e-3, 1e-4]}}
    accepted = client.post("/sweeps", json=sweep)
    assert accepted.status_code == 202, accepted.text
    jobs = accepted.json()["jobs"]
    assert [job["overrides"] for job in jobs] == [{"optimizer.learning_rate": 3e-3}, {"optimizer.learning_rate": 1e-4}]
    for job in jobs:
        assert wait_job(job["job_id"], worker=worker)["state"] == "completed"
        spec = client.get(f"/models/{job['job_id']}").json()["card"]["spec"]
        assert spec["optimizer"]["learning_rate"] == job["overrides"]["optimizer.learning_rate"]

    table = client.get(f"/sweeps/{accepted.json()['sweep_id']}").json()
    assert [row["job_id"] for row in table["rows"]] == [job["job_id"] for job in jobs]
    for row in table["rows"]:
        assert row["state"] == "completed"
        assert row["test_top1"] is not None and row["best_val_accuracy"] is not None
        assert row["label"].startswith("learning_rate=")
    assert table["best_job_id"] in {job["job_id"] for job in jobs}
    plot = client.get(table["plot_url"])
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(plot.content)).format == "PNG"
