"""Named training presets (tensorflow/models style): a full, validated spec from a few arguments.

``demo`` trains the demo model on a CPU in about a minute: the tiny CNN at 64 px on the synthetic species.
The backbone presets are what a GPU user runs as they are, one per Keras application: ImageNet weights, the
recipe of issue 20 (random resized crop with a milder area range than ImageNet's, label smoothing 0.1, AdamW
with warmup and cosine decay, a head phase then fine-tuning most of the
backbone at a tenth of the rate, early stopping and ReduceLROnPlateau on val_loss; no centre crop at evaluation,
because /predict does not crop and evaluation must see what serving sees), mixed precision on the GPU,
every GPU of the host (``mirrored``: the batch is per replica, so the global batch and the rates grow with the
GPUs) or of every worker of a multi-host job (``python -m services.trainer.multiworker``), and the data as
TFRecord shards. ``gpu`` is the EfficientNet-B0 preset under its old name.

Each preset names the figure it should approach on real data: top-1 on DF20-Mini at 299 px from the Danish
Fungi 2020 paper (Picek et al., WACV 2022). That is a **reference**, not a result of this code: the
paper trained its own recipe on its own 182-species split; a GBIF download of other species will land elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

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


# What each backbone preset sets apart from the shared recipe. batch: per replica, sized for a 24 GB GPU
# (A10G, L4) in mixed precision at that image size. unfreeze: the last layers with weights (BatchNorm not
# counted) opened in fine-tuning, about three quarters of the backbone (of 82, 53, 94, 52 and 95 such layers).
# reference: DF20-Mini top-1 at 299 px (Picek et al. 2022), None where the paper has no row for the backbone.
BACKBONE_PRESETS: dict[str, dict[str, Any]] = {
    "efficientnet_b0": {"image_size": 299, "batch": 64, "unfreeze": 60, "reference": 67.9},
    "resnet50": {"image_size": 299, "batch": 64, "unfreeze": 40, "reference": 68.4},
    "inception_v3": {"image_size": 299, "batch": 64, "unfreeze": 70, "reference": 65.9},
    "mobilenet_v3": {"image_size": 224, "batch": 128, "unfreeze": 40, "reference": None},
    "convnext_tiny": {"image_size": 224, "batch": 48, "unfreeze": 70, "reference": None,
                      "weight_decay": 0.05, "head_lr": 5e-4},
}


def backbone_spec(backbone: str, dataset: str, version: int | None = None, top_n: int = 10) -> TrainingJobSpec:
    """The issue-20 recipe on ``backbone`` with ImageNet weights, for a GPU worker; see BACKBONE_PRESETS."""
    plan = BACKBONE_PRESETS[backbone]
    head_lr = plan.get("head_lr", 1e-3)
    return TrainingJobSpec.model_validate({
        "name": f"{backbone} on {dataset}",
        "data": {"dataset": dataset, "manifest_version": version, "top_n": top_n, "image_size": plan["image_size"]},
        "backbone": {"name": backbone, "weights": "imagenet"},
        "head": {"dropout": 0.2},
        "optimizer": {"name": "adam", "learning_rate": head_lr, "weight_decay": plan.get("weight_decay", 0.01),
                      "schedule": "cosine", "warmup_epochs": 1},
        "batch_size": plan["batch"],
        "epochs": 8,  # the head phase, backbone frozen
        "label_smoothing": 0.1,
        "augmentation": {"crop_area": [0.25, 1.0], "eval_crop": 1.0, "rotation": 30, "flip_horizontal": True,
                         "flip_vertical": False, "zoom": 0.0, "interpolation": "bilinear", "fill_mode": "reflect",
                         "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.0,
                         "random_erasing": 0.25},
        # eval_crop 1: /predict sees the whole photo, so evaluation does too
        "callbacks": {"monitor": "val_loss", "early_stopping": {"patience": 6}, "reduce_lr": {"patience": 3}},
        "fine_tune": {"enabled": True, "unfreeze_layers": plan["unfreeze"], "epochs": 40,
                      "learning_rate": head_lr / 10},
        "mixed_precision": "auto",
        "distribution": "mirrored",
        "input": "shards",
    })


def _describe(backbone: str) -> str:
    plan = BACKBONE_PRESETS[backbone]
    reference = (f"reference: DF20-Mini top-1 {plan['reference']}% at 299 px (Picek et al. 2022), not a result"
                 if plan["reference"] is not None else "no DF20 reference figure for this backbone")
    return (f"{backbone} on ImageNet weights at {plan['image_size']} px, batch {plan['batch']} per GPU, head then "
            f"fine-tuning, every GPU; {reference}")


def _preset(backbone: str) -> Callable[..., TrainingJobSpec]:
    factory = partial(backbone_spec, backbone)
    factory.__doc__ = _describe(backbone)  # the API lists its first line
    return factory


def gpu_spec(dataset: str, version: int | None = None, top_n: int = 10) -> TrainingJobSpec:
    """The efficientnet_b0 preset under its old name (the recipe the notebooks' EfficientNetB0 grew into)."""
    return backbone_spec("efficientnet_b0", dataset, version, top_n)


PRESETS: dict[str, Callable[..., TrainingJobSpec]] = {
    "demo": demo_spec, "gpu": gpu_spec, **{name: _preset(name) for name in BACKBONE_PRESETS},
}
