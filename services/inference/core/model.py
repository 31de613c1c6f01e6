"""A served model: the Keras model from the registry, compiled once into ``tf.function`` graphs.

Serving never calls ``model.predict`` per request (it is about 3x slower for one image): the batcher
calls :meth:`ServedModel.predict`, a ``tf.function`` traced once for any batch size.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from shared.cpus import available_cpus
from shared.registry import ModelCard, ModelRegistry, model_key

logger = logging.getLogger(__name__)


class ModelRefused(RuntimeError):
    """A promoted model that cannot be served (does not load, or fails the smoke prediction)."""


@dataclass
class ServedModel:
    card: ModelCard
    keras_model: Any
    predict_fn: Any
    promoted_at: datetime | None = None
    loaded_at: float = field(default_factory=time.time)
    _explain_fn: Any = None

    @property
    def model_id(self) -> str:
        return self.card.model_id

    @property
    def image_size(self) -> int:
        return self.card.image_size

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Softmax probabilities for a float32 batch (n, size, size, 3) in [0, 255]."""
        return np.asarray(self.predict_fn(tf.convert_to_tensor(batch, dtype=tf.float32)))

    def explain(self, image: np.ndarray, class_index: int) -> np.ndarray:
        """A Grad-CAM map in [0, 1] (h, w) of the last spatial feature map for ``class_index``."""
        if self._explain_fn is None:
            self._explain_fn = build_gradcam(self.keras_model, self.image_size)
        cam = self._explain_fn(tf.convert_to_tensor(image[None], tf.float32), tf.constant(class_index, tf.int32))
        return np.asarray(cam)


def configure_threads(intra_op_threads: int) -> int:
    """Set TensorFlow's intra-op thread count (0: half the CPUs the process may use, at least 1) before its
    runtime starts.

    Returns the count in force; once TensorFlow has run an op the setting is fixed, which is logged.
    """
    wanted = intra_op_threads or max(1, available_cpus() // 2)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(wanted)
    except RuntimeError:
        current = tf.config.threading.get_intra_op_parallelism_threads()
        if current != wanted:
            logger.warning("TensorFlow already started with %s intra-op threads; wanted %d",
                           current or "default", wanted)
        return current
    return wanted


def compile_predict(model: Any, image_size: int) -> Any:
    spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32)

    @tf.function(input_signature=[spec], reduce_retracing=True)
    def predict(images: tf.Tensor) -> tf.Tensor:
        return model(images, training=False)

    return predict


def _layer_chain(model: Any) -> list[Any]:
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def build_gradcam(model: Any, image_size: int) -> Any:
    """Grad-CAM on the last top-level layer with a spatial output (a conv layer, or a whole backbone).

    The model is replayed layer by layer so the tape sees that feature map; this needs a model whose
    top level is a chain (Sequential, or backbone + head), which is checked against the model's own output.
    """
    chain = _layer_chain(model)
    spatial = [i for i, layer in enumerate(chain)
               if len(getattr(getattr(layer, "output", None), "shape", ())) == 4
               and (layer.output.shape[1] or 0) > 1]
    if not spatial:
        raise ModelRefused("the model has no spatial feature map to explain")
    split = spatial[-1] + 1
    head, tail = chain[:split], chain[split:]
    spec = tf.TensorSpec([1, image_size, image_size, 3], tf.float32)

    def replay(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        features = image
        for layer in head:
            features = layer(features, training=False)
        probs = features
        for layer in tail:
            probs = layer(probs, training=False)
        return features, probs

    probe = np.random.default_rng(1).uniform(0, 255, (1, image_size, image_size, 3)).astype(np.float32)
    if not np.allclose(np.asarray(replay(tf.constant(probe))[1]), np.asarray(model(probe, training=False)),
                       atol=1e-4):
        raise ModelRefused("the model is not a chain of layers; Grad-CAM is not available for it")

    @tf.function(input_signature=[spec, tf.TensorSpec([], tf.int32)])
    def gradcam(image: tf.Tensor, class_index: tf.Tensor) -> tf.Tensor:
        features = image
        with tf.GradientTape() as tape:
            for layer in head:
                features = layer(features, training=False)
            tape.watch(features)
            probs = features
            for layer in tail:
                probs = layer(probs, training=False)
            score = probs[0, class_index]
        grads = tape.gradient(score, features)
        weights = tf.reduce_mean(grads, axis=(1, 2))  # one weight per channel
        cam = tf.nn.relu(tf.reduce_sum(features[0] * weights[0], axis=-1))
        return cam / (tf.reduce_max(cam) + 1e-8)

    return gradcam


def load_served_model(registry: ModelRegistry, model_id: str, promoted_at: datetime | None = None,
                      cache_dir: str = "") -> ServedModel:
    """Download, load and smoke-test ``model_id``; raise :class:`ModelRefused` if it cannot serve."""
    try:
        card = registry.card(model_id)
    except Exception as exc:  # noqa: BLE001 - any failure refuses the model
        raise ModelRefused(f"model {model_id!r}: no readable card ({exc})") from exc
    with tempfile.TemporaryDirectory(prefix="sporeprint-model-", dir=cache_dir or None) as tmp:
        path = Path(tmp) / "model.keras"
        try:
            registry.store.get_file(model_key(model_id, "model.keras"), path)
            model = keras.models.load_model(path, compile=False)
        except Exception as exc:  # noqa: BLE001 - a corrupt or missing file refuses the model
            raise ModelRefused(f"model {model_id!r} does not load: {exc}") from exc
    expected = (card.image_size, card.image_size, 3)
    inputs = getattr(model, "inputs", None)
    declared = tuple(inputs[0].shape[1:]) if inputs else expected
    if len(declared) != 3 or any(d is not None and d != e for d, e in zip(declared, expected, strict=True)):
        raise ModelRefused(f"model {model_id!r} takes input shape {declared}; its card says {expected}")
    predict_fn = compile_predict(model, card.image_size)
    served = ServedModel(card=card, keras_model=model, predict_fn=predict_fn, promoted_at=promoted_at)
    smoke_test(served)
    return served


def smoke_test(served: ServedModel) -> None:
    """One prediction on a grey and a noise image, also tracing the graph before it serves traffic."""
    rng = np.random.default_rng(0)
    size = served.image_size
    batch = np.stack([np.full((size, size, 3), 128, np.float32), rng.uniform(0, 255, (size, size, 3))]).astype(
        np.float32
    )
    try:
        probs = served.predict(batch)
    except Exception as exc:  # noqa: BLE001 - wrong input shape, broken graph...
        raise ModelRefused(f"model {served.model_id!r} failed the smoke prediction: {exc}") from exc
    n_classes = len(served.card.classes)
    if probs.shape != (2, n_classes):
        raise ModelRefused(
            f"model {served.model_id!r} answered shape {probs.shape}; its card has {n_classes} classes"
        )
    if not np.all(np.isfinite(probs)) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3) or probs.min() < 0:
        raise ModelRefused(f"model {served.model_id!r} does not output softmax probabilities")
