"""TrainingJobSpec and SweepSpec: defaults from the notebooks' lessons, validation, overrides, sweeps."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.trainer.presets import PRESETS, demo_spec, gpu_spec
from shared.training import Backbone, SweepSpec, TrainingJobSpec

pytestmark = pytest.mark.unit


def base(**changes: object) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({"data": {"dataset": "fungi"}, **changes})


def test_defaults_follow_what_worked_in_the_notebooks() -> None:
    spec = base()
    assert spec.optimizer.name == "adam" and spec.optimizer.learning_rate == 1e-4
    assert spec.callbacks.early_stopping.enabled and spec.callbacks.early_stopping.patience == 5
    assert spec.callbacks.reduce_lr.enabled
    assert spec.augmentation.rotation == 180
    assert spec.backbone.name is Backbone.efficientnet_b0 and spec.backbone.weights == "imagenet"
    assert spec.data.manifest_version is None and spec.data.split.test == 0.15
    assert spec.openset.knn_k == 50 and spec.openset.bank_size == 10_000
    assert spec.openset.id_retention == 0.95 and spec.openset.confident_precision == 0.9


@pytest.mark.parametrize(("weights", "keras_weights"), [("imagenet", "imagenet"), ("none", None), ("None", None),
                                                        ("/models/b0_notop.h5", "/models/b0_notop.h5")])
def test_weights_are_imagenet_none_or_a_path(weights: str, keras_weights: str | None) -> None:
    assert base(backbone={"weights": weights}).backbone.keras_weights == keras_weights


@pytest.mark.parametrize(("changes", "message"), [
    ({"backbone": {"name": "alexnet"}}, "Input should be 'efficientnet_b0'"),
    ({"data": {"dataset": "fungi", "classes": []}}, "classes must not be empty"),
    ({"data": {"dataset": "fungi", "classes": ["a", " "]}}, "must not be blank"),
    ({"data": {"dataset": "fungi", "split": {"train": 0.8, "validation": 0.15, "test": 0.15}}}, "sum to 1"),
    ({"data": {"dataset": "fungi", "split": {"train": 1.0, "validation": 0.0, "test": 0.0}}}, "greater than 0"),
    ({"data": {"dataset": "fungi", "image_size": 64}, "backbone": {"name": "inception_v3"}}, "minimum 75"),
    ({"backbone": {"weights": "  "}}, "weights must be"),
    ({"fine_tune": {"enabled": True, "unfreeze_layers": 0}}, "greater than or equal to 1"),
    ({"class_weights": "sometimes"}, "'none' or 'balanced'"),
    ({"distribution": "tpu"}, "'default' or 'mirrored'"),
    ({"openset": {"knn_k": 0}}, "greater than or equal to 1"),
    ({"openset": {"id_retention": 1.0}}, "less than 1"),
    ({"openset": {"threshold": 1.0}}, "Extra inputs are not permitted"),
])
def test_invalid_specs_say_what_is_wrong(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        base(**changes)


def test_specs_are_frozen_and_overrides_make_a_validated_copy() -> None:
    spec = base()
    with pytest.raises(ValidationError):
        spec.epochs = 3  # type: ignore[misc]
    changed = spec.with_overrides({"optimizer.learning_rate": 1e-3, "data.images_per_class": 100})
    assert changed.optimizer.learning_rate == 1e-3 and changed.data.images_per_class == 100
    assert spec.optimizer.learning_rate == 1e-4
    assert spec.pinned(7).data.manifest_version == 7
    with pytest.raises(KeyError, match="unknown spec path 'optimizer.beta'"):
        spec.with_overrides({"optimizer.beta": 1})
    with pytest.raises(ValidationError):
        spec.with_overrides({"epochs": -1})


def test_a_sweep_expands_its_grid_into_every_combination() -> None:
    sweep = SweepSpec.model_validate({
        "base": base().model_dump(),
        "grid": {"optimizer.learning_rate": [1e-3, 1e-4], "augmentation.rotation": [0, 180]},
    })
    expanded = sweep.expand()
    assert len(expanded) == 4
    assert {(s.optimizer.learning_rate, s.augmentation.rotation) for _, s in expanded} == {
        (1e-3, 0), (1e-3, 180), (1e-4, 0), (1e-4, 180)}
    assert expanded[0][0] == {"optimizer.learning_rate": 1e-3, "augmentation.rotation": 0}


def test_presets_are_valid_and_the_demo_needs_no_download() -> None:
    demo = demo_spec("fungi", 3)
    assert demo.backbone.name is Backbone.tiny_cnn and demo.backbone.keras_weights is None
    assert demo.data.manifest_version == 3 and demo.data.image_size <= 64
    assert gpu_spec("fungi") == PRESETS["efficientnet_b0"]("fungi")  # the old name of the B0 preset
    assert set(PRESETS) == {"demo", "gpu", "efficientnet_b0", "resnet50", "inception_v3", "mobilenet_v3",
                            "convnext_tiny"}


@pytest.mark.parametrize("name", sorted(set(PRESETS) - {"demo", "gpu"}))
def test_each_backbone_preset_runs_as_it_is_on_gpus(name: str) -> None:
    spec = PRESETS[name]("fungi", 2)
    assert spec.backbone.name.value == name and spec.backbone.weights == "imagenet"
    assert spec.fine_tuning and spec.fine_tune.learning_rate < spec.optimizer.learning_rate
    assert spec.distribution.value == "mirrored" and spec.mixed_precision == "auto" and spec.input == "shards"
    assert spec.optimizer.schedule == "cosine" and spec.optimizer.weight_decay > 0 and spec.label_smoothing > 0
    assert spec.augmentation.random_crop and spec.augmentation.eval_crop == 1  # /predict does not crop
    assert spec.callbacks.monitor == "val_loss"
    described = (PRESETS[name].__doc__ or "").splitlines()[0]
    reference = {"efficientnet_b0": "67.9%", "resnet50": "68.4%", "inception_v3": "65.9%"}.get(name)
    assert (reference in described and "not a result" in described) if reference else "no DF20" in described
