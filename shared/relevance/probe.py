"""Stage 2 of the relevance gate: a linear probe, trained on the human labels of the review sheets, that
corrects the pretrained model's zero-shot log-odds.

The probe is a logistic regression on the pretrained embedding (L2-normalised) and the image statistics,
with the zero-shot log-odds as a fixed offset: ``z = zero_shot + w . x + b``. Its L2 penalty pulls ``w`` and
``b`` to zero, so with few labels the gate stays the zero-shot gate, and labels only move it where they
consistently disagree. Labels are 1 for irrelevant (not a field photo of a fungus), 0 for relevant.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

MIN_LABELS_PER_CLASS = 5


class RelevanceProbe(BaseModel):
    """A fitted probe: what it learnt, on what, and how it did on held-out labels."""

    model_config = ConfigDict(extra="forbid")

    features: str = Field(description="what the probe reads, in order")
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    l2: float
    trained_at: datetime
    pretrained: str = Field(description="the pretrained model whose embeddings it was fitted on")
    human_labels: int
    irrelevant_labels: int
    held_out: int
    held_out_precision: float | None = None
    held_out_recall: float | None = None
    held_out_zero_shot_precision: float | None = None
    held_out_zero_shot_recall: float | None = None

    @property
    def version(self) -> str:
        digest = hashlib.sha256(np.asarray(self.weights, np.float32).tobytes()).hexdigest()
        return f"probe-{digest[:10]}"

    def correction(self, features: np.ndarray) -> np.ndarray:
        """The log-odds the probe adds for each row of ``features`` (n, d): positive = more irrelevant."""
        x = (np.asarray(features, np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return np.asarray(x @ np.asarray(self.weights) + self.bias, dtype=np.float64)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -40, 40))), dtype=np.float64)


def fit_offset_logistic(features: np.ndarray, labels: np.ndarray, offset: np.ndarray, l2: float,
                        sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Fit ``sigmoid(offset + w . standardised(x) + b)`` to ``labels``; returns (mean, scale, w, b).

    Classes are balanced (each carries half the weight) so a rare class is not ignored.
    """
    from scipy.optimize import minimize  # imported here: it costs a second of every service's start-up

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    z0 = np.asarray(offset, dtype=np.float64)
    w_sample = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    xs = (x - mean) / scale
    d = xs.shape[1]
    positives = max(float((w_sample * y).sum()), 1e-9)
    negatives = max(float((w_sample * (1 - y)).sum()), 1e-9)
    w_sample = w_sample * np.where(y > 0.5, 0.5 / positives, 0.5 / negatives)

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        weights, bias = params[:d], params[d]
        z = z0 + xs @ weights + bias
        p = sigmoid(z)
        eps = 1e-12
        value = -(w_sample * (y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))).sum()
        value += l2 * (weights @ weights + bias * bias)
        residual = w_sample * (p - y)
        grad = np.concatenate([xs.T @ residual + 2 * l2 * weights, [residual.sum() + 2 * l2 * bias]])
        return float(value), grad

    result = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B")
    return mean, scale, result.x[:d], float(result.x[d])


def precision_recall(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """Precision and recall of ``scores > threshold`` for the positive (irrelevant) class."""
    predicted = scores > threshold
    truth = labels > 0.5
    tp = float((predicted & truth).sum())
    precision = tp / float(predicted.sum()) if predicted.any() else 1.0
    recall = tp / float(truth.sum()) if truth.any() else 1.0
    return precision, recall
