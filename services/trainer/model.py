"""The classifier: a Keras application backbone (or the tiny CNN) and a small head, preprocessing inside.

Input: float32 RGB in [0, 255] of the spec's image size; output: logits over the classes (shared/registry.py).
Logits, not probabilities, because temperature scaling (calibration) divides them before the softmax, and the
energy score needs them; the penultimate embedding is layer ``pool``, which the kNN open-set score reads.
Each backbone's own preprocessing is built from stock Keras layers (no Lambda, no custom classes), so the
inference service loads ``model.keras`` with plain ``keras.models.load_model``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from shared.openset import EMBEDDING_LAYER
from shared.training import Backbone, OptimizerName, TrainingJobSpec

logger = logging.getLogger(__name__)

BACKBONE_LAYER = "backbone"
LOGITS_LAYER = "logits"
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

# name -> (constructor, preprocessing the backbone expects on [0, 255] RGB input)
_APPLICATIONS: dict[Backbone, tuple[Callable[..., keras.Model], str]] = {
    Backbone.efficientnet_b0: (keras.applications.EfficientNetB0, "included"),
    Backbone.efficientnet_b1: (keras.applications.EfficientNetB1, "included"),
    Backbone.efficientnet_b2: (keras.applications.EfficientNetB2, "included"),
    Backbone.efficientnet_b3: (keras.applications.EfficientNetB3, "included"),
    Backbone.resnet50: (keras.applications.ResNet50, "caffe"),
    Backbone.vgg16: (keras.applications.VGG16, "caffe"),
    Backbone.vgg19: (keras.applications.VGG19, "caffe"),
    Backbone.inception_v3: (keras.applications.InceptionV3, "tf"),
    Backbone.mobilenet_v3: (keras.applications.MobileNetV3Small, "included"),
    Backbone.convnext_tiny: (keras.applications.ConvNeXtTiny, "included"),  # its Normalization layer: [0, 255] in
}


def tiny_cnn(image_size: int) -> keras.Model:
    """Three conv blocks: learns the synthetic species in seconds on a CPU (tests, demos)."""
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)  # few steps per run: fast moving averages
        x = keras.layers.Activation("relu")(x)
    return keras.Model(inputs, x, name=BACKBONE_LAYER)


def build_backbone(spec: TrainingJobSpec) -> tuple[keras.Model, str]:
    size = spec.data.image_size
    if spec.backbone.name is Backbone.tiny_cnn:
        if spec.backbone.keras_weights not in (None,):
            raise ValueError("tiny_cnn has no pretrained weights: use weights 'none'")
        return tiny_cnn(size), "included"
    constructor, preprocessing = _APPLICATIONS[spec.backbone.name]
    kwargs: dict[str, Any] = {"include_top": False, "weights": spec.backbone.keras_weights,
                              "input_shape": (size, size, 3)}
    backbone = constructor(**kwargs)
    return keras.Model(backbone.input, backbone.output, name=BACKBONE_LAYER), preprocessing


def _preprocessing_layers(kind: str) -> list[keras.layers.Layer]:
    if kind == "caffe":  # RGB -> BGR and subtract the ImageNet mean: one fixed 3x3 Dense with a bias
        permute = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype="float32")
        layer = keras.layers.Dense(3, trainable=False, name="caffe_preprocessing")
        layer.build((None, None, None, 3))
        layer.set_weights([permute, -np.array(_CAFFE_MEAN_BGR, dtype="float32")])
        return [layer]
    if kind == "tf":  # [-1, 1]
        return [keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="tf_preprocessing")]
    return []


def build_model(spec: TrainingJobSpec, num_classes: int) -> keras.Model:
    size = spec.data.image_size
    backbone, preprocessing = build_backbone(spec)
    pretrained = spec.backbone.keras_weights is not None
    # A pretrained backbone is frozen while the head learns (fine-tuning unfreezes its end later); a randomly
    # initialised one has nothing worth preserving, so it trains from the first epoch.
    backbone.trainable = not pretrained
    inputs = keras.Input((size, size, 3), dtype="float32", name="image")
    x = inputs
    for layer in _preprocessing_layers(preprocessing):
        x = layer(x)
    # training=False keeps a pretrained backbone's BatchNorm in inference mode, also once it is unfrozen.
    x = backbone(x, training=False) if pretrained else backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name=EMBEDDING_LAYER)(x)
    if spec.head.dropout:
        x = keras.layers.Dropout(spec.head.dropout, name="dropout")(x)
    if spec.head.dense_units:
        x = keras.layers.Dense(spec.head.dense_units, activation="relu", name="dense")(x)
        if spec.head.dropout:
            x = keras.layers.Dropout(spec.head.dropout, name="dense_dropout")(x)
    # float32 even under mixed precision: logits feed a softmax and distances that float16 would round.
    outputs = keras.layers.Dense(num_classes, activation=None, dtype="float32", name=LOGITS_LAYER)(x)
    return keras.Model(inputs, outputs, name=f"sporeprint_{spec.backbone.name.value}")


def make_optimizer(name: OptimizerName, learning_rate: float, weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
    """Keras 3 optimizers all take decoupled ``weight_decay`` (Adam with it is AdamW, Loshchilov & Hutter 2019)."""
    decay = weight_decay or None
    if name is OptimizerName.sgd:
        return keras.optimizers.SGD(learning_rate, momentum=0.9, weight_decay=decay)
    if name is OptimizerName.rmsprop:
        return keras.optimizers.RMSprop(learning_rate, weight_decay=decay)
    if decay:
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    return keras.optimizers.Adam(learning_rate)


def compile_model(
    model: keras.Model, name: OptimizerName, learning_rate: float, jit_compile: bool | None = None, *,
    weight_decay: float = 0.0, label_smoothing: float = 0.0, soft_labels: bool = False,
) -> None:
    """``soft_labels``: the datasets give one-hot or mixed (B, classes) labels, which label smoothing needs
    (Keras' sparse cross-entropy has no smoothing) and MixUp/CutMix make; otherwise integer labels."""
    if jit_compile is None:
        import tensorflow as tf

        jit_compile = bool(tf.config.list_physical_devices("GPU"))
    if soft_labels:
        loss: keras.losses.Loss = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                                      label_smoothing=label_smoothing)
        accuracy: keras.metrics.Metric = keras.metrics.CategoricalAccuracy(name="accuracy")
    elif label_smoothing:
        raise ValueError("label smoothing needs soft (one-hot) labels")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    optimizer = make_optimizer(name, learning_rate, weight_decay)
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_list=no_decay_variables(model))
    model.compile(optimizer=optimizer, loss=loss, metrics=[accuracy], jit_compile=jit_compile)


def no_decay_variables(model: keras.Model) -> list[keras.Variable]:
    """The variables weight decay leaves alone: every one of rank 0 or 1, i.e. biases, BatchNorm and LayerNorm
    scales and offsets, ConvNeXt's layer scales (timm's rule; Loshchilov & Hutter decay the weight matrices and
    kernels: shrinking a normalisation's scale towards 0 is not regularisation but a change of the layer)."""
    return [variable for variable in model.weights if len(variable.shape) <= 1]


def unfreeze_for_fine_tuning(model: keras.Model, layers: int) -> int:
    """Unfreeze the backbone's last ``layers`` layers with weights, BatchNorm neither counted nor unfrozen;
    returns how many became trainable (``layers``, or fewer in a small backbone).

    BatchNorm stays frozen and in inference mode: its moving statistics are ImageNet's, and a small fine-tuning
    batch would overwrite them with noisy ones (the Keras transfer-learning guide does the same). A backbone that
    trained from scratch is already trainable: it stays so (fine-tuning only lowers the LR).
    """
    backbone = model.get_layer(BACKBONE_LAYER)
    if backbone.trainable and all(layer.trainable for layer in backbone.layers):
        return len(backbone.layers)
    backbone.trainable = True
    candidates = [layer for layer in backbone.layers
                  if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)]
    tail = set(map(id, candidates[-layers:]))
    for layer in backbone.layers:
        layer.trainable = id(layer) in tail
    return len(tail)
