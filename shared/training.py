"""The training contract: a TrainingJobSpec says exactly what to train, on which manifest version, and how.

A typed, nested experiment config in the manner of tensorflow/models ``official/`` (data, model, optimizer,
augmentation, callbacks, fine-tuning, open-set fitting, runtime), validated and frozen; the trainer writes it
next to the model (``models/<id>/spec.json``) so that every model is reproducible from its card.

Sweeps (``SweepSpec``) expand a base spec over a grid of dotted-path overrides, one job per combination.
"""

from __future__ import annotations

import itertools
import math
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from shared.schemas import DatasetName, TaxonLevel


class Backbone(StrEnum):
    efficientnet_b0 = "efficientnet_b0"
    efficientnet_b1 = "efficientnet_b1"
    efficientnet_b2 = "efficientnet_b2"
    efficientnet_b3 = "efficientnet_b3"
    resnet50 = "resnet50"
    vgg16 = "vgg16"
    vgg19 = "vgg19"
    inception_v3 = "inception_v3"
    mobilenet_v3 = "mobilenet_v3"
    convnext_tiny = "convnext_tiny"
    tiny_cnn = "tiny_cnn"  # a few conv layers: tests and CPU demos


# Smallest input each backbone accepts (Keras applications refuse smaller ones).
MIN_IMAGE_SIZE: dict[Backbone, int] = dict.fromkeys(Backbone, 32)
MIN_IMAGE_SIZE[Backbone.inception_v3] = 75
MIN_IMAGE_SIZE[Backbone.tiny_cnn] = 16


class OptimizerName(StrEnum):
    adam = "adam"
    sgd = "sgd"
    rmsprop = "rmsprop"


class DistributionStrategy(StrEnum):
    """How many devices train one job (synchronous data parallelism: every replica sees batch_size images a step).

    ``mirrored`` is ``tf.distribute.MirroredStrategy`` over every GPU of the host, or, when ``TF_CONFIG`` names a
    cluster of several workers (``python -m services.trainer.multiworker``), ``MultiWorkerMirroredStrategy`` over
    every GPU of every worker. The spec stays the same; the replicas (devices in sync) follow the hardware.
    """

    default = "default"  # one device (the first GPU, else the CPU)
    mirrored = "mirrored"  # every GPU of the host, or of every worker of a TF_CONFIG cluster


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitFractions(_Frozen):
    train: float = Field(default=0.7, gt=0, lt=1)
    validation: float = Field(default=0.15, gt=0, lt=1)
    test: float = Field(default=0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> Self:
        total = self.train + self.validation + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"split fractions must sum to 1, got {total:g}")
        return self


class DataConfig(_Frozen):
    dataset: DatasetName = Field(description="manifest dataset name")
    manifest_version: int | None = Field(
        default=None, ge=1, description="exact manifest version; None = the latest, pinned when the job is accepted"
    )
    taxon_level: TaxonLevel = TaxonLevel.species
    classes: list[str] | None = Field(
        default=None, description="explicit class names at the taxon level; None = the top_n most frequent"
    )
    top_n: int = Field(default=10, ge=2, le=1000, description="how many classes when `classes` is not given")
    min_images_per_class: int = Field(default=10, ge=1, description="classes with fewer usable images are dropped")
    images_per_class: int | None = Field(default=None, ge=1, description="cap per class (None: no cap)")
    split: SplitFractions = SplitFractions()
    split_seed: int = 0
    image_size: int = Field(default=224, ge=16, le=1024)

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("classes must not be empty: list at least 2 class names, or omit it to use top_n")
        names = [name.strip() for name in value]
        if any(not name for name in names):
            raise ValueError("class names must not be blank")
        if len(set(names)) != len(names):
            raise ValueError("class names must be unique")
        if len(names) < 2:
            raise ValueError("a classifier needs at least 2 classes")
        return names


class BackboneConfig(_Frozen):
    name: Backbone = Backbone.efficientnet_b0
    weights: str = Field(
        default="imagenet", description="'imagenet', 'none', or a path to a local weights file (no top)"
    )

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("weights must be 'imagenet', 'none' or a path to a weights file")
        return value

    @property
    def keras_weights(self) -> str | None:
        return None if self.weights.lower() == "none" else self.weights


class HeadConfig(_Frozen):
    dropout: float = Field(default=0.2, ge=0, lt=1)
    dense_units: int = Field(default=0, ge=0, le=8192, description="hidden Dense units before the classifier; 0: none")


class OptimizerConfig(_Frozen):
    """The optimizer and the shape of its learning rate over each phase (head, then fine-tuning)."""

    name: OptimizerName = OptimizerName.adam
    learning_rate: float = Field(default=1e-4, gt=0, le=1, description="the peak rate (after warmup)")
    weight_decay: float = Field(
        default=0.0, ge=0, le=1,
        description="decoupled weight decay (Loshchilov & Hutter 2019: Adam becomes AdamW); Keras applies "
                    "variable -= variable * weight_decay * learning_rate each step; 0: none")
    schedule: Literal["constant", "cosine"] = Field(
        default="constant",
        description="'constant': the rate stays at learning_rate (ReduceLROnPlateau may lower it); 'cosine': "
                    "half-cosine decay over each phase's planned epochs (Loshchilov & Hutter 2017, "
                    "keras.optimizers.schedules.CosineDecay)")
    warmup_epochs: float = Field(
        default=0.0, ge=0, le=100,
        description="linear warmup from 0 to learning_rate at the start of each phase (Goyal et al. 2017: "
                    "large global batches with a linearly scaled rate need it); 0: none")
    cosine_floor: float = Field(
        default=0.0, ge=0, lt=1,
        description="the cosine ends at this fraction of learning_rate (CosineDecay's alpha)")


class AugmentationConfig(_Frozen):
    """Each augmentation has a strength; 0 (or False) switches it off.

    The geometric ones (crop, rotation, zoom, flips) are one affine map per image, resampled once."""

    rotation: float = Field(default=180, ge=0, le=180, description="max rotation, degrees either way")
    flip_horizontal: bool = True
    flip_vertical: bool = False
    zoom: float = Field(default=0.1, ge=0, le=0.5, description="max relative zoom in or out about the centre")
    crop_area: tuple[float, float] = Field(
        default=(1.0, 1.0),
        description="random resized crop (Szegedy et al. 2015): each training image is a crop covering this "
                    "range of the image's area, resized to image_size; Model Garden's ImageNet range is "
                    "(0.08, 1.0), fine-grained species want a milder one, e.g. (0.35, 1.0); (1, 1): off")
    crop_aspect_ratio: tuple[float, float] = Field(
        default=(3 / 4, 4 / 3), description="the crop's width/height range, sampled log-uniformly")
    interpolation: Literal["bilinear", "nearest"] = Field(
        default="bilinear", description="how the affine map resamples (nearest aliases on rotated edges)")
    fill_mode: Literal["reflect", "nearest"] = Field(
        default="reflect",
        description="what a rotated or shifted image shows outside the photo: 'reflect' mirrors it (Keras "
                    "RandomRotation's default), 'nearest' repeats the edge pixel (smeared streaks)")
    brightness: float = Field(default=0.1, ge=0, le=1, description="max brightness shift, fraction of 255")
    contrast: float = Field(default=0.1, ge=0, le=1, description="max relative contrast change")
    saturation: float = Field(default=0.0, ge=0, le=1, description="max relative saturation change")
    hue: float = Field(
        default=0.0, ge=0, le=0.5,
        description="max hue rotation, fraction of the colour wheel; cap colour is diagnostic, keep it small")
    random_erasing: float = Field(
        default=0.0, ge=0, le=1,
        description="probability of erasing one random rectangle (2-33% of the area) with noise (Zhong et al. "
                    "2020)")
    randaugment_ops: int = Field(
        default=0, ge=0, le=4,
        description="RandAugment (Cubuk et al. 2020): this many random operations per image (torchvision's 14: "
                    "shear, translate, rotate, brightness, colour, contrast, sharpness, posterize, solarize, "
                    "autocontrast, equalize, identity); 2 is the paper's ImageNet choice; 0: off")
    randaugment_magnitude: float = Field(
        default=9, ge=0, le=30, description="RandAugment's strength on torchvision's scale of 31 bins (0-30)")
    mixup_alpha: float = Field(
        default=0.0, ge=0, le=10, description="MixUp (Zhang et al. 2018): Beta(alpha, alpha) blend of two "
                                              "images and their labels; 0: off")
    cutmix_alpha: float = Field(
        default=0.0, ge=0, le=10, description="CutMix (Yun et al. 2019): a box of another image, labels mixed by "
                                              "area; 0: off (with MixUp too, each batch takes one of the two)")
    eval_crop: float = Field(
        default=1.0, gt=0, le=1,
        description="validation and test images: the central fraction of each side, resized back to image_size "
                    "(Model Garden: 0.875); 1: the whole image. Serving must crop alike (see the trainer README)")

    @field_validator("crop_area", "crop_aspect_ratio")
    @classmethod
    def _range(cls, value: tuple[float, float], info: ValidationInfo) -> tuple[float, float]:
        low, high = value
        if low > high:
            raise ValueError(f"{info.field_name} must be (min, max) with min <= max, got {value}")
        if info.field_name == "crop_area" and not 0 < low <= high <= 1:
            raise ValueError(f"crop_area must lie in (0, 1], got {value}")
        if info.field_name == "crop_aspect_ratio" and not 0.1 <= low <= high <= 10:
            raise ValueError(f"crop_aspect_ratio must lie in [0.1, 10], got {value}")
        return value

    @property
    def random_crop(self) -> bool:
        return self.crop_area != (1.0, 1.0)

    @property
    def geometric(self) -> bool:
        return bool(self.rotation or self.zoom or self.flip_horizontal or self.flip_vertical or self.random_crop)

    @property
    def photometric(self) -> bool:
        return bool(self.brightness or self.contrast or self.saturation or self.hue)

    @property
    def mixing(self) -> bool:
        """MixUp or CutMix: the labels become soft (class probabilities)."""
        return bool(self.mixup_alpha or self.cutmix_alpha)

    @property
    def enabled(self) -> bool:
        """Whether the per-image augmentations change anything (mixing is applied with the labels, apart)."""
        return bool(self.geometric or self.photometric or self.randaugment_ops or self.random_erasing)


class EarlyStoppingConfig(_Frozen):
    enabled: bool = True
    patience: int = Field(default=5, ge=1)


class ReduceLROnPlateauConfig(_Frozen):
    enabled: bool = True
    factor: float = Field(default=0.2, gt=0, lt=1)
    patience: int = Field(default=3, ge=1)
    min_lr: float = Field(default=1e-7, ge=0)


class CallbacksConfig(_Frozen):
    """EarlyStopping and ReduceLROnPlateau watch ``monitor``; the kept weights are the epoch with the best
    validation accuracy (ties: lower validation loss), because models are chosen and promoted on it."""

    monitor: Literal["val_loss", "val_accuracy"] = Field(
        default="val_loss",
        description="what EarlyStopping and ReduceLROnPlateau watch: val_loss moves smoothly, val_accuracy of a "
                    "small validation split jumps by whole images (Keras' default is val_loss)")
    min_delta: float = Field(default=1e-4, ge=0, le=1,
                             description="a change smaller than this is no improvement (Keras ReduceLROnPlateau)")
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    reduce_lr: ReduceLROnPlateauConfig = ReduceLROnPlateauConfig()


class FineTuneConfig(_Frozen):
    """After the head has converged: unfreeze the last N backbone layers (BatchNorm stays frozen), lower LR."""

    enabled: bool | Literal["auto"] = Field(
        default="auto",
        description="fine-tune after the head phase; 'auto': when the backbone is pretrained (a backbone trained "
                    "from scratch, weights 'none', is trainable all along: true only adds epochs at the lower rate)")
    unfreeze_layers: int = Field(
        default=20, ge=1,
        description="how many of the backbone's last layers with weights to unfreeze, BatchNorm not counted "
                    "(BatchNorm layers stay frozen, in inference mode)")
    epochs: int = Field(default=5, ge=1, le=1000)
    learning_rate: float = Field(
        default=1e-5, gt=0, le=1,
        description="peak fine-tuning rate; never above the head's rate as ReduceLROnPlateau left it")


class ExportConfig(_Frozen):
    saved_model: bool = True
    tflite_float16: bool = True


class OpenSetConfig(_Frozen):
    """How the job fits open-set answers after training: a kNN bank of training embeddings, and thresholds
    and a temperature fitted on the validation split (never the test split)."""

    method: Literal["mahalanobis", "knn"] = Field(
        default="mahalanobis",
        description="novelty score of the served model's embedding: class-conditional Mahalanobis (Lee et al. 2018) "
                    "or the k-th nearest training embedding on L2-normalised features (Sun et al. 2022); both are "
                    "compared in the card")
    knn_k: int = Field(default=50, ge=1, le=1000,
                       description="score = distance to the k-th nearest training embedding (capped at bank - 1)")
    bank_size: int = Field(default=10_000, ge=10, le=200_000,
                           description="training embeddings kept in the bank (stratified seeded subsample)")
    id_retention: float = Field(default=0.95, ge=0.5, lt=1,
                                description="share of validation images the OOD threshold keeps")
    confident_precision: float = Field(
        default=0.9, gt=0, le=1,
        description="answers at or above uncertain_below must be right this often on validation")


class TrainingJobSpec(_Frozen):
    """Everything a training job needs: the same spec on the same manifest version trains the same recipe (the
    same data, splits, model and schedule); the same weights to the bit only with ``deterministic``."""

    name: str | None = Field(default=None, max_length=100, description="a label for people")
    data: DataConfig
    backbone: BackboneConfig = BackboneConfig()
    head: HeadConfig = HeadConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    batch_size: int = Field(
        default=32, ge=1, le=4096,
        description="images per replica and step: the global batch is batch_size x replicas (GPUs in sync, over "
                    "every worker), and the learning rates (optimizer and fine-tuning) are multiplied by the "
                    "replicas (linear scaling rule); with one device both are as written",
    )
    epochs: int = Field(default=30, ge=1, le=1000)
    augmentation: AugmentationConfig = AugmentationConfig()
    callbacks: CallbacksConfig = CallbacksConfig()
    fine_tune: FineTuneConfig = FineTuneConfig()
    class_weights: Literal["none", "balanced"] = Field(
        default="balanced", description="'balanced' weighs each class by n_samples / (n_classes * n_class)"
    )
    label_smoothing: float = Field(
        default=0.0, ge=0, lt=1,
        description="the target is (1 - e) on the class and e spread over all classes (Szegedy et al. 2016; "
                    "Keras CategoricalCrossentropy label_smoothing; 0.1 is the usual value, the GPU presets "
                    "use it); 0: hard integer labels, so a stored spec without the field trains as it did")
    mixed_precision: bool | Literal["auto"] = Field(
        default="auto",
        description="mixed_float16 compute (logits stay float32); 'auto': on with a GPU, off on a CPU (no "
                    "speed-up there); the model's card records what it was")
    deterministic: bool = Field(
        default=False,
        description="bit-identical reruns of the same spec on the same hardware and software: op determinism "
                    "(tf.config.experimental.enable_op_determinism, for the whole worker process), tf.data in "
                    "order, and augmentations from the seed; slower (about 10-30% here), so off by default")
    jit_compile: bool | None = Field(
        default=None,
        description="XLA-compile the train step; None: only on a GPU (on a CPU it costs more than it saves)",
    )
    distribution: DistributionStrategy = DistributionStrategy.default
    input: Literal["objects", "shards"] = Field(
        default="objects",
        description="'objects': each image fetched once into the worker's disk cache (no second copy in storage; "
                    "right up to ~100k images on one worker); 'shards': the plan is packed once into TFRecord "
                    "shards on S3 (shards/<dataset>/v<version>/<plan>/, reused by every job with the same split) "
                    "and streamed (many images, many or short-lived workers)",
    )
    export: ExportConfig = ExportConfig()
    openset: OpenSetConfig = OpenSetConfig()
    auto_promote: bool = Field(
        default=False,
        description="promote when its validation top-1 beats the promoted model's on the same split",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _image_size_fits_backbone(self) -> Self:
        minimum = MIN_IMAGE_SIZE[self.backbone.name]
        if self.data.image_size < minimum:
            raise ValueError(
                f"image_size {self.data.image_size} is too small for {self.backbone.name.value} (minimum {minimum})"
            )
        return self

    @property
    def fine_tuning(self) -> bool:
        """Whether the job has a fine-tuning phase (``fine_tune.enabled`` with 'auto' resolved)."""
        if self.fine_tune.enabled == "auto":
            return self.backbone.keras_weights is not None
        return bool(self.fine_tune.enabled)

    def pinned(self, manifest_version: int) -> TrainingJobSpec:
        """This spec with its manifest version fixed (what the job actually trains on)."""
        return self.with_overrides({"data.manifest_version": manifest_version})

    def with_overrides(self, overrides: dict[str, Any]) -> TrainingJobSpec:
        """A new, validated spec with dotted-path overrides applied, e.g. ``{"optimizer.learning_rate": 1e-3}``."""
        data = self.model_dump(mode="json")
        for path, value in overrides.items():
            _set_dotted(data, path, value)
        return TrainingJobSpec.model_validate(data)


MAX_SWEEP_JOBS = 32


class SweepSpec(_Frozen):
    """A base spec and a grid: every combination of the grid's values becomes one job."""

    name: str | None = Field(default=None, max_length=100)
    base: TrainingJobSpec
    grid: dict[str, list[Any]] = Field(
        description="dotted spec path -> values, e.g. {'optimizer.learning_rate': [1e-3, 1e-4]}"
    )

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not grid:
            raise ValueError("grid must name at least one spec path")
        for path, values in grid.items():
            if not values:
                raise ValueError(f"grid path {path!r} has no values")
        size = math.prod(len(values) for values in grid.values())
        if size > MAX_SWEEP_JOBS:
            raise ValueError(f"the grid makes {size} jobs; at most {MAX_SWEEP_JOBS} per sweep")
        return grid

    @model_validator(mode="after")
    def _every_point_is_valid(self) -> Self:
        self.expand()  # raises ValueError naming the bad combination
        return self

    def points(self) -> list[dict[str, Any]]:
        paths = list(self.grid)
        return [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*self.grid.values())]

    def expand(self) -> list[tuple[dict[str, Any], TrainingJobSpec]]:
        expanded = []
        for point in self.points():
            try:
                expanded.append((point, self.base.with_overrides(point)))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"grid point {point} is not a valid spec: {exc}") from None
        return expanded


def _set_dotted(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            raise KeyError(f"unknown spec path {path!r}")
        node = child
    if parts[-1] not in node:
        raise KeyError(f"unknown spec path {path!r}")
    node[parts[-1]] = value


CONTRACT_MODELS: dict[str, type[BaseModel]] = {"TrainingJobSpec": TrainingJobSpec, "SweepSpec": SweepSpec}
