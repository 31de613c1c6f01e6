"""A served model: the Keras model from the registry, compiled once into ``tf.function`` graphs, with the
open-set artefacts its training job fitted (novelty scorer, threshold, temperature; shared/openset.py).

Serving never calls ``model.predict`` per request (it is about 3x slower for one image): the batcher
calls :meth:`ServedModel.score`, a ``tf.function`` traced once for any batch size, which returns the
penultimate embedding and the logits of one forward pass.
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

from shared import openset
from shared.cpus import available_cpus
from shared.registry import ModelCard, ModelRegistry, model_key

logger = logging.getLogger(__name__)


class ModelRefused(RuntimeError):
    """A promoted model that cannot be served (does not load, or fails the smoke prediction)."""


@dataclass
class ServedModel:
    card: ModelCard
    keras_model: Any
    predict_fn: Any  # images -> (embedding or None, logits); for an old softmax model, log-probabilities
    novelty_scorer: openset.NoveltyScorer | None = None
    promoted_at: datetime | None = None
    loaded_at: float = field(default_factory=time.time)
    _explain_fn: Any = None

    @property
    def model_id(self) -> str:
        return self.card.model_id

    @property
    def image_size(self) -> int:
        return self.card.image_size

    @property
    def temperature(self) -> float:
        return self.card.openset.temperature if self.card.openset else 1.0

    def score(self, batch: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(embedding (n, d) or None, logits (n, classes)) for a float32 batch (n, size, size, 3) in [0, 255]."""
        embedding, logits = self.predict_fn(tf.convert_to_tensor(batch, dtype=tf.float32))
        return (None if embedding is None else np.asarray(embedding)), np.asarray(logits)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (softmax of logits / temperature) for a batch."""
        return self.predict_from_logits(self.score(batch)[1])

    def predict_from_logits(self, logits: np.ndarray) -> np.ndarray:
        return openset.softmax(logits, self.temperature)

    def novelty(self, embedding: np.ndarray | None) -> np.ndarray | None:
        """Novelty score / the fitted threshold per row (> 1: unlike every class it knows); None without a scorer."""
        if self.novelty_scorer is None or embedding is None or self.card.openset is None:
            return None
        return self.novelty_scorer.score(embedding) / max(self.card.openset.threshold, 1e-9)

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


def compile_predict(model: Any, image_size: int, logits: bool) -> Any:
    """One graph for (embedding, logits). A model that outputs softmax (trained before logits were exported)
    gives log-probabilities instead, which softmax maps back to the same probabilities."""
    spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32)
    try:
        both = openset.embedding_model(model)
    except ValueError:  # no layer "pool": no embedding, so no open-set score
        both = None

    @tf.function(input_signature=[spec], reduce_retracing=True)
    def predict(images: tf.Tensor) -> tuple[tf.Tensor | None, tf.Tensor]:
        if both is None:
            embedding, output = None, model(images, training=False)
        else:
            embedding, output = both(images, training=False)
        if not logits:
            output = tf.math.log(tf.maximum(output, 1e-12))
        return embedding, output

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
    scorer = None
    with tempfile.TemporaryDirectory(prefix="sporeprint-model-", dir=cache_dir or None) as tmp:
        path = Path(tmp) / "model.keras"
        try:
            registry.store.get_file(model_key(model_id, "model.keras"), path)
            model = keras.models.load_model(path, compile=False)
        except Exception as exc:  # noqa: BLE001 - a corrupt or missing file refuses the model
            raise ModelRefused(f"model {model_id!r} does not load: {exc}") from exc
        if card.openset is not None:
            bank = Path(tmp) / "openset.npz"
            try:
                registry.store.get_file(model_key(model_id, "openset.npz"), bank)
                scorer = openset.load_scorer(bank)
            except Exception as exc:  # noqa: BLE001 - a card that promises a scorer must have one
                raise ModelRefused(f"model {model_id!r}: its open-set bank does not load: {exc}") from exc
    expected = (card.image_size, card.image_size, 3)
    inputs = getattr(model, "inputs", None)
    declared = tuple(inputs[0].shape[1:]) if inputs else expected
    if len(declared) != 3 or any(d is not None and d != e for d, e in zip(declared, expected, strict=True)):
        raise ModelRefused(f"model {model_id!r} takes input shape {declared}; its card says {expected}")
    predict_fn = compile_predict(model, card.image_size, logits=card.output == "logits")
    served = ServedModel(card=card, keras_model=model, predict_fn=predict_fn, novelty_scorer=scorer,
                         promoted_at=promoted_at)
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
        embedding, logits = served.score(batch)
        probs = served.predict_from_logits(logits)
        served.novelty(embedding)
    except Exception as exc:  # noqa: BLE001 - wrong input shape, broken graph, a bank of another width...
        raise ModelRefused(f"model {served.model_id!r} failed the smoke prediction: {exc}") from exc
    n_classes = len(served.card.classes)
    if probs.shape != (2, n_classes):
        raise ModelRefused(
            f"model {served.model_id!r} answered shape {probs.shape}; its card has {n_classes} classes"
        )
    if not np.all(np.isfinite(probs)):
        raise ModelRefused(f"model {served.model_id!r} answers non-finite numbers")
    if served.card.output == "probabilities":  # a card that promises softmax must get softmax
        raw = np.asarray(served.keras_model(tf.convert_to_tensor(batch), training=False))
        if not np.allclose(raw.sum(axis=1), 1.0, atol=1e-3) or raw.min() < 0:
            raise ModelRefused(f"model {served.model_id!r} does not output softmax probabilities, as its card says")
