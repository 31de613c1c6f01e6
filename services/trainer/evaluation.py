"""Test-split metrics and the plots a person reads to judge a model."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """top-1, top-3, macro F1, per-class precision/recall/F1 and the confusion matrix (rows: true class)."""
    n_classes = len(class_names)
    predicted = probabilities.argmax(axis=1)
    k = min(3, n_classes)
    top_k = np.argsort(-probabilities, axis=1)[:, :k]
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {}
    f1s = []
    for index, name in enumerate(class_names):
        tp = confusion[index, index]
        predicted_as = confusion[:, index].sum()
        actual = confusion[index, :].sum()
        precision = float(tp / predicted_as) if predicted_as else 0.0
        recall = float(tp / actual) if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int(actual)}
    total = len(labels)
    return {
        "top1": float((predicted == labels).mean()) if total else 0.0,
        "top3": float((top_k == labels[:, None]).any(axis=1).mean()) if total else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "test_images": total,
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def _figure_png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def curves_png(history: list[dict[str, float]], fine_tune_epoch: int | None = None) -> bytes:
    """Loss and accuracy per epoch, train and validation."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4))
    epochs = [row["epoch"] for row in history]
    for axis, metric in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        axis.plot(epochs, [row.get(metric) for row in history], marker="o", label=f"train {metric}")
        axis.plot(epochs, [row.get(f"val_{metric}") for row in history], marker="o", label=f"validation {metric}")
        if fine_tune_epoch is not None:
            axis.axvline(fine_tune_epoch + 0.5, color="grey", linestyle="--", label="fine-tuning starts")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.legend()
    return _figure_png(figure)


def confusion_png(confusion: list[list[int]], class_names: list[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    matrix = np.array(confusion)
    side = max(4.0, 0.45 * len(class_names) + 2)
    figure = Figure(figsize=(side + 1, side))
    axis = figure.subplots()
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis)
    axis.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
    axis.set_yticks(range(len(class_names)), class_names, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(class_names) <= 20:
        for (row, column), value in np.ndenumerate(matrix):
            axis.text(column, row, str(value), ha="center", va="center", fontsize=7)
    return _figure_png(figure)


def comparison_png(rows: list[dict[str, Any]]) -> bytes:
    """Sweep comparison: test top-1 and best validation accuracy per job."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(5.0, 1.2 * len(rows) + 2), 4))
    axis = figure.subplots()
    positions = np.arange(len(rows))
    axis.bar(positions - 0.2, [row.get("best_val_accuracy") or 0 for row in rows], 0.4, label="best val accuracy")
    axis.bar(positions + 0.2, [row.get("test_top1") or 0 for row in rows], 0.4, label="test top-1")
    axis.set_xticks(positions, [row["label"] for row in rows], rotation=30, ha="right", fontsize=7)
    axis.set_ylim(0, 1)
    axis.legend()
    axis.set_title("sweep comparison")
    return _figure_png(figure)
