"""TrainingRun's recipe end to end on local files (tiny CNN, 16 px, CPU): resume of the schedule and
ReduceLROnPlateau state, the fine-tuning rate cap, mixed precision 'auto', and bit-identical deterministic runs.

Only the input source is replaced (local files instead of the S3 cache); the fit, callbacks, checkpoints and
state files are the real ones. Run as a script, this file trains once and prints a digest of the weights: the
determinism test runs it in two fresh processes (op determinism is process-wide, it must not leak into the other
tests)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from services.trainer.dataset import DatasetPlan, Example
from services.trainer.input import build_dataset
from services.trainer.task import JobCanceled, TrainingRun
from shared.registry import ClassLabel
from shared.storage import ObjectStore
from shared.training import TrainingJobSpec

pytestmark = [pytest.mark.unit, pytest.mark.ml]

SIZE = 16
CLASSES = 3


def write_images(directory: Path, per_class: int = 8) -> dict[str, list[tuple[str, int]]]:
    """Class-coloured noisy squares, split 6/1/1 per class."""
    rng = np.random.default_rng(0)
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "validation": [], "test": []}
    directory.mkdir(parents=True, exist_ok=True)
    for label in range(CLASSES):
        base = np.zeros(3)
        base[label] = 200
        for index in range(per_class):
            pixels = np.clip(base + rng.normal(0, 40, (24, 24, 3)), 0, 255).astype("uint8")
            path = directory / f"{label}-{index}.png"
            Image.fromarray(pixels).save(path)
            split = "train" if index < per_class - 2 else ("validation" if index == per_class - 2 else "test")
            splits[split].append((str(path), label))
    return splits


class LocalInput:
    def __init__(self, spec: TrainingJobSpec, files: dict[str, list[tuple[str, int]]], batch_size: int) -> None:
        self.spec, self.files, self.batch_size = spec, files, batch_size

    def dataset(self, split: str, training: bool) -> tf.data.Dataset:
        paths, labels = zip(*self.files[split], strict=True)
        return build_dataset(paths, labels, SIZE, self.batch_size,
                             augmentation=self.spec.augmentation if training else None, shuffle=training,
                             seed=self.spec.seed)


class LocalRun(TrainingRun):
    files: dict[str, list[tuple[str, int]]]

    def build_inputs(self) -> dict[str, tf.data.Dataset]:
        self.plan = DatasetPlan(
            classes=[ClassLabel(index=i, name=f"species {i}") for i in range(CLASSES)],
            splits={split: [Example(Path(path).stem, Path(path).stem, path, label) for path, label in items]
                    for split, items in self.files.items()})
        self.input = LocalInput(self.spec, self.files, self.global_batch_size)
        return {split: self.split_dataset(split, training=split == "train") for split in self.plan.splits}


def recipe(**changes: Any) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({
        "data": {"dataset": "local", "manifest_version": 1, "image_size": SIZE},
        "backbone": {"name": "tiny_cnn", "weights": "none"}, "head": {"dropout": 0},
        "optimizer": {"learning_rate": 3e-3}, "batch_size": 6, "epochs": 4,
        "augmentation": {"rotation": 30, "crop_area": [0.6, 1.0], "saturation": 0.1, "mixup_alpha": 0.2},
        "callbacks": {"early_stopping": {"enabled": False}, "reduce_lr": {"factor": 0.5, "patience": 1}},
        **changes})


def make_run(spec: TrainingJobSpec, files: dict[str, list[tuple[str, int]]], store: ObjectStore, work: Path,
             model_id: str = "m-recipe", **kwargs: Any) -> LocalRun:
    run = LocalRun(spec, model_id, store, work, **kwargs)
    run.files = files
    return run


def rates(history: list[dict[str, Any]]) -> list[float]:
    return [round(row["learning_rate"], 12) for row in history]


# min_delta 1 on val_accuracy: nothing ever counts as improving after the first epoch, so ReduceLROnPlateau
# lowers the rate after every later epoch whatever the weights do, and the rates are known in advance.
PLATEAU_EVERY_EPOCH = {"monitor": "val_accuracy", "min_delta": 1.0, "early_stopping": {"enabled": False},
                       "reduce_lr": {"factor": 0.5, "patience": 1}}


def test_a_resumed_run_continues_the_schedule_and_the_plateau_counters(tmp_path: Path,
                                                                       dir_store: ObjectStore) -> None:
    files = write_images(tmp_path / "images")
    spec = recipe(epochs=6, optimizer={"learning_rate": 3e-3, "schedule": "cosine", "warmup_epochs": 1},
                  callbacks=PLATEAU_EVERY_EPOCH)
    whole = make_run(spec, files, dir_store, tmp_path / "whole", model_id="m-whole")
    whole.train()

    epochs_done = 0

    def cancel_after_three() -> bool:
        nonlocal epochs_done
        epochs_done += 1
        return epochs_done == 3

    first = make_run(spec, files, dir_store, tmp_path / "first", model_id="m-resumed",
                     cancel_requested=cancel_after_three)
    with pytest.raises(JobCanceled):
        first.train()
    state = dir_store.get_json("models/m-resumed/checkpoint/state.json")
    assert state["epoch"] == 3 and state["plateau"]["scale"] == 0.25 and state["plateau"]["best"] is not None
    resumed = make_run(spec, files, dir_store, tmp_path / "second", model_id="m-resumed")
    resumed.train()
    assert resumed.state.resumed_from == [3] and len(resumed.state.history) == 6
    # each epoch's last step: the cosine at that step (optimizer.iterations survived) times the plateau scale
    # before that epoch's decision (the counters survived): a reset would restart either
    curve, steps = resumed.phase_curve(), resumed.steps_per_epoch
    expected = [curve(steps * (epoch + 1) - 1) * 0.5 ** max(0, epoch - 1) for epoch in range(6)]
    assert [row["learning_rate"] for row in resumed.state.history] == pytest.approx(expected, rel=1e-5)
    assert rates(resumed.state.history) == rates(whole.state.history)
    assert resumed.state.plateau.scale == whole.state.plateau.scale == 0.5 ** 5


def test_the_fine_tuning_rate_never_exceeds_the_head_rate_left_by_the_plateau(tmp_path: Path,
                                                                            dir_store: ObjectStore) -> None:
    files = write_images(tmp_path / "images")
    spec = recipe(epochs=4, fine_tune={"enabled": True, "epochs": 2, "learning_rate": 1e-2},
                  callbacks=PLATEAU_EVERY_EPOCH)
    run = make_run(spec, files, dir_store, tmp_path / "work")
    run.train()
    head = [row for row in run.state.history if row["phase"] == "head"]
    fine = [row for row in run.state.history if row["phase"] == "fine_tune"]
    assert len(head) == 4 and len(fine) == 2
    head_level = 3e-3 * 0.5 ** 3  # the head's rate after its last plateau decision
    assert run.state.fine_tune_learning_rate == pytest.approx(head_level)  # capped: 1e-2 was asked for
    assert max(row["learning_rate"] for row in fine) <= head_level * (1 + 1e-6)
    assert fine[0]["learning_rate"] == pytest.approx(head_level, rel=1e-5)
    assert run.distribution()["fine_tune_learning_rate"] == pytest.approx(head_level)


def test_mixed_precision_auto_is_off_on_a_cpu_and_recorded_in_the_spec(tmp_path: Path,
                                                                      dir_store: ObjectStore) -> None:
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU turns it on")
    run = make_run(recipe(), {}, dir_store, tmp_path)
    assert run.spec.mixed_precision is False  # what the card and spec.json record
    assert run.card(cast(Any, "training")).spec["mixed_precision"] is False
    assert make_run(recipe(mixed_precision=True), {}, dir_store, tmp_path).spec.mixed_precision is True


def train_once_and_digest(work: Path) -> str:
    from tests.unit.trainer.conftest import DirectoryBucket  # only when run as a script

    files = write_images(work / "images")
    store = cast(ObjectStore, DirectoryBucket(work / "bucket"))
    run = make_run(recipe(deterministic=True, augmentation={
        "rotation": 180, "crop_area": [0.5, 1.0], "brightness": 0.2, "random_erasing": 0.5, "mixup_alpha": 0.4,
        "cutmix_alpha": 1.0}), files, store, work / "work")
    model = run.train()
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return json.dumps({"weights": digest.hexdigest(), "history": run.state.history})


def test_two_deterministic_runs_give_identical_weights(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(repo), "TF_CPP_MIN_LOG_LEVEL": "2"}
    outputs = []
    for name in ("one", "two"):
        done = subprocess.run([sys.executable, __file__, str(tmp_path / name)], env=env, cwd=repo,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert outputs[0]["history"] == outputs[1]["history"]
    assert outputs[0]["weights"] == outputs[1]["weights"]
    assert len(outputs[0]["history"]) == 4


if __name__ == "__main__":
    print(train_once_and_digest(Path(sys.argv[1])))
