"""A small L2-regularized logistic regression (numpy + scipy), used to calibrate stage 1 and train stage 2."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LogisticModel:
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        z = ((features - self.mean) / self.scale) @ self.weights + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))), dtype=np.float64)

    def to_json(self) -> dict[str, object]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "weights": self.weights.tolist(),
                "bias": self.bias}

    @classmethod
    def from_json(cls, value: dict[str, object]) -> LogisticModel:
        def arr(name: str) -> np.ndarray:
            return np.asarray(value[name], dtype=np.float32)

        return cls(arr("mean"), arr("scale"), arr("weights"), float(value["bias"]))  # type: ignore[arg-type]


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = 1e-2,
                 sample_weight: np.ndarray | None = None) -> LogisticModel:
    """Fit on standardized features; ``labels`` are 1 (irrelevant) or 0 (relevant)."""
    from scipy.optimize import minimize  # imported here: it costs a second of every service's start-up

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    w_sample = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    xs = (x - mean) / scale
    d = xs.shape[1]
    # Balance the classes so a rare class is not ignored.
    positives = max(float((w_sample * y).sum()), 1e-9)
    negatives = max(float((w_sample * (1 - y)).sum()), 1e-9)
    w_sample = w_sample * np.where(y > 0.5, 0.5 * w_sample.sum() / positives, 0.5 * w_sample.sum() / negatives)
    w_sample = w_sample / w_sample.sum()

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        weights, bias = params[:d], params[d]
        z = xs @ weights + bias
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        eps = 1e-12
        value = -(w_sample * (y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))).sum() + l2 * weights @ weights
        residual = w_sample * (p - y)
        grad = np.concatenate([xs.T @ residual + 2 * l2 * weights, [residual.sum()]])
        return float(value), grad

    result = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B")
    return LogisticModel(mean.astype(np.float32), scale.astype(np.float32),
                         result.x[:d].astype(np.float32), float(result.x[d]))


def precision_recall(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    predicted = scores > threshold
    truth = labels > 0.5
    tp = float((predicted & truth).sum())
    precision = tp / max(float(predicted.sum()), 1.0) if predicted.any() else 1.0
    recall = tp / max(float(truth.sum()), 1.0) if truth.any() else 1.0
    return precision, recall
