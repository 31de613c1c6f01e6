"""Named training presets (tensorflow/models style): a full, validated spec from a few arguments.

``demo_spec(dataset, version)`` trains the demo model on a CPU in about a minute: the tiny CNN at 64 px on
the synthetic species. ``gpu_spec`` is the recipe the notebooks converged on (EfficientNetB0 on ImageNet
weights, Adam 1e-4, rotation up to 180 degrees, EarlyStopping + ModelCheckpoint on val_accuracy with patience 5,
ReduceLROnPlateau, then fine-tuning the last backbone layers) on every GPU of the host (``mirrored``: per-replica
batch 32, so the global batch and the learning rates grow with the GPUs), or of every worker of a multi-host job
(``python -m services.trainer.multiworker``, deploy/k8s/train-multiworker.yaml).
"""

from __future__ import annotations

from collections.abc import Callable

from shared.training import TrainingJobSpec


def demo_spec(dataset: str, version: int | None = None, classes: list[str] | None = None) -> TrainingJobSpec:
    """A CPU-sized spec for the demo: tiny CNN, 64 px, no downloads, SavedModel and TFLite exported."""
    return TrainingJobSpec.model_validate({
        "name": f"demo on {dataset}",
        "data": {"dataset": dataset, "manifest_version": version, "classes": classes, "image_size": 64,
                 "min_images_per_class": 6, "top_n": 10},
        "backbone": {"name": "tiny_cnn", "weights": "none"},
        "head": {"dropout": 0.1},
        "optimizer": {"name": "adam", "learning_rate": 3e-3},
        "batch_size": 32,
        "epochs": 12,
        "augmentation": {"rotation": 180, "flip_horizontal": True, "zoom": 0.1, "brightness": 0.1,
                         "contrast": 0.1},
        "callbacks": {"early_stopping": {"patience": 5}, "reduce_lr": {"factor": 0.3, "patience": 2}},
        "auto_promote": True,
    })


def gpu_spec(dataset: str, version: int | None = None, top_n: int = 10) -> TrainingJobSpec:
    """The notebooks' best recipe, on a GPU worker with ImageNet weights."""
    return TrainingJobSpec.model_validate({
        "name": f"efficientnet_b0 on {dataset}",
        "data": {"dataset": dataset, "manifest_version": version, "top_n": top_n, "image_size": 224,
                 "images_per_class": 4000},
        "backbone": {"name": "efficientnet_b0", "weights": "imagenet"},
        "optimizer": {"name": "adam", "learning_rate": 1e-4},
        "epochs": 50,
        "augmentation": {"rotation": 180, "flip_horizontal": True, "flip_vertical": True},
        "fine_tune": {"enabled": True, "unfreeze_layers": 20, "epochs": 10, "learning_rate": 1e-5},
        "mixed_precision": True,
        "distribution": "mirrored",
    })


PRESETS: dict[str, Callable[..., TrainingJobSpec]] = {"demo": demo_spec, "gpu": gpu_spec}
