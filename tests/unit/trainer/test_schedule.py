"""The learning-rate curve per step (warmup, cosine), ReduceLROnPlateau on the monitored metric, the fine-tuning
cap, and the spec fields of the recipe (issue #20)."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from pydantic import ValidationError

from services.trainer.schedule import LearningRateController, PhaseCurve, PlateauState, fine_tune_peak
from shared.training import CallbacksConfig, OptimizerConfig, TrainingJobSpec

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


def test_warmup_is_linear_from_zero_to_the_peak() -> None:
    curve = PhaseCurve.for_phase(OptimizerConfig(learning_rate=1e-3, warmup_epochs=2), 1e-3, epochs=10,
                                 steps_per_epoch=5)
    assert curve.warmup_steps == 10 and curve.total_steps == 50
    assert [curve(step) for step in (0, 5, 10)] == pytest.approx([0.0, 5e-4, 1e-3])
    assert curve(49) == pytest.approx(1e-3)  # constant after the warmup


@pytest.mark.ml
def test_the_cosine_matches_keras_cosine_decay_with_warmup() -> None:
    optimizer = OptimizerConfig(learning_rate=2e-3, schedule="cosine", warmup_epochs=1, cosine_floor=0.1)
    curve = PhaseCurve.for_phase(optimizer, 2e-3, epochs=6, steps_per_epoch=10)
    reference = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=50, alpha=0.1, warmup_target=2e-3, warmup_steps=10)
    steps = [0, 3, 10, 11, 25, 35, 59, 60]
    expected = [float(keras.ops.convert_to_numpy(reference(step))) for step in steps]
    assert [curve(step) for step in steps] == pytest.approx(expected, rel=1e-5, abs=1e-9)
    values = [curve(step) for step in range(10, 61)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))  # decays monotonically
    assert curve(35) == pytest.approx(2e-3 * (0.1 + 0.9 * 0.5))  # halfway down the half cosine
    assert curve(1000) == pytest.approx(2e-4)  # the floor, not below


class FakeOptimizer:
    def __init__(self, iterations: int = 0) -> None:
        self.iterations = np.int64(iterations)
        self.learning_rate = 0.0


class FakeModel:
    def __init__(self, iterations: int = 0) -> None:
        self.optimizer = FakeOptimizer(iterations)


def controller(plateau: PlateauState, iterations: int = 0, **callbacks: object) -> LearningRateController:
    config = CallbacksConfig.model_validate({"reduce_lr": {"factor": 0.5, "patience": 2, "min_lr": 1e-4},
                                             **callbacks})
    control = LearningRateController(PhaseCurve(peak=1e-3, total_steps=100), plateau, config)
    control.set_model(FakeModel(iterations))  # type: ignore[arg-type]
    control.on_train_begin()
    return control


@pytest.mark.ml
def test_reduce_on_plateau_watches_val_loss_by_default_and_stops_at_min_lr() -> None:
    plateau = PlateauState()
    control = controller(plateau)
    losses = [1.0, 0.9, 0.95, 0.92, 0.91, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98]
    scales = []
    for epoch, loss in enumerate(losses):
        control.on_epoch_end(epoch, {"val_loss": loss, "val_accuracy": 0.5 + epoch / 100})  # accuracy improves
        scales.append(plateau.scale)
    assert scales[:3] == [1.0, 1.0, 1.0]
    assert scales[3] == 0.5  # two epochs without a lower val_loss
    assert min(scales) == pytest.approx(0.1)  # min_lr / peak: never lower
    control.on_train_batch_begin(0)
    assert control.model.optimizer.learning_rate == pytest.approx(1e-4)


@pytest.mark.ml
def test_reduce_on_plateau_can_watch_val_accuracy_instead() -> None:
    plateau = PlateauState()
    control = controller(plateau, monitor="val_accuracy")
    for epoch, accuracy in enumerate([0.5, 0.6, 0.6, 0.6]):
        control.on_epoch_end(epoch, {"val_loss": 1.0 - epoch / 10, "val_accuracy": accuracy})
    assert plateau.scale == 0.5


@pytest.mark.ml
def test_the_controller_sets_the_rate_of_each_step_from_the_optimizer_iterations() -> None:
    curve = PhaseCurve(peak=1e-3, total_steps=10, warmup_steps=4)
    control = LearningRateController(curve, PlateauState(scale=0.5), CallbacksConfig())
    control.set_model(FakeModel(iterations=2))  # type: ignore[arg-type]
    control.on_train_begin()  # a resumed phase: 2 steps done
    rates = []
    for batch in range(3):
        control.on_train_batch_begin(batch)
        rates.append(control.model.optimizer.learning_rate)
    assert rates == pytest.approx([0.5 * 1e-3 * 2 / 4, 0.5 * 1e-3 * 3 / 4, 0.5 * 1e-3])


def test_fine_tuning_never_starts_above_the_head_rate_as_the_plateau_left_it() -> None:
    assert fine_tune_peak(1e-5, 1e-4, PlateauState()) == 1e-5
    assert fine_tune_peak(1e-5, 1e-4, PlateauState(scale=0.04)) == pytest.approx(4e-6)


def base(**changes: object) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({"data": {"dataset": "fungi"}, **changes})


def test_recipe_defaults() -> None:
    spec = base()
    assert spec.callbacks.monitor == "val_loss" and spec.label_smoothing == 0.0
    assert spec.mixed_precision == "auto" and spec.deterministic is False
    assert spec.optimizer.schedule == "constant" and spec.optimizer.weight_decay == 0
    assert spec.fine_tune.enabled == "auto" and spec.fine_tuning  # pretrained (imagenet): fine-tuned
    assert not base(backbone={"name": "tiny_cnn", "weights": "none"}).fine_tuning  # nothing frozen to unfreeze
    assert base(backbone={"name": "tiny_cnn", "weights": "none"}, fine_tune={"enabled": True}).fine_tuning


@pytest.mark.parametrize(("changes", "message"), [
    ({"augmentation": {"crop_area": [0.8, 0.3]}}, "min <= max"),
    ({"augmentation": {"crop_area": [0.0, 1.0]}}, r"crop_area must lie in \(0, 1\]"),
    ({"augmentation": {"crop_area": [0.5, 1.2]}}, r"crop_area must lie in \(0, 1\]"),
    ({"augmentation": {"crop_aspect_ratio": [2, 1]}}, "min <= max"),
    ({"augmentation": {"eval_crop": 0}}, "greater than 0"),
    ({"augmentation": {"fill_mode": "wrap"}}, "'reflect' or 'nearest'"),
    ({"label_smoothing": 1.0}, "less than 1"),
    ({"optimizer": {"schedule": "step"}}, "'constant' or 'cosine'"),
    ({"callbacks": {"monitor": "loss"}}, "'val_loss' or 'val_accuracy'"),
    ({"mixed_precision": "sometimes"}, "auto"),
])
def test_invalid_recipe_fields_say_what_is_wrong(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        base(**changes)


def test_old_specs_in_the_repository_still_validate() -> None:
    old = json.loads((REPO / "deploy/aws/job-spec.example.json").read_text())
    spec = TrainingJobSpec.model_validate(old)
    assert spec.mixed_precision is True and spec.fine_tune.enabled is True
    # a card's spec from before issue #20: every field it has keeps its meaning, the new ones take defaults
    before = {"data": {"dataset": "d", "manifest_version": 3}, "mixed_precision": False,
              "fine_tune": {"enabled": False, "unfreeze_layers": 20, "epochs": 5, "learning_rate": 1e-5},
              "augmentation": {"rotation": 180, "flip_horizontal": True, "flip_vertical": False, "zoom": 0.1,
                               "brightness": 0.1, "contrast": 0.1},
              "callbacks": {"early_stopping": {"enabled": True, "patience": 5},
                            "reduce_lr": {"enabled": True, "factor": 0.2, "patience": 3, "min_lr": 1e-7}}}
    parsed = TrainingJobSpec.model_validate(before)
    assert not parsed.fine_tuning and parsed.mixed_precision is False
    assert TrainingJobSpec.model_validate(parsed.model_dump(mode="json")) == parsed  # round-trips as JSON
