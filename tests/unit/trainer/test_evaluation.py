"""Test-split metrics computed from predictions."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from services.trainer.evaluation import classification_metrics, comparison_png, confusion_png, curves_png

pytestmark = pytest.mark.unit


def test_metrics_of_known_predictions() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array([
        [0.8, 0.1, 0.1], [0.1, 0.7, 0.2],  # class 0: right, wrong (predicted 1)
        [0.2, 0.7, 0.1], [0.1, 0.8, 0.1],  # class 1: right, right
        [0.1, 0.2, 0.7], [0.5, 0.3, 0.2],  # class 2: right, wrong (predicted 0; the true class is third)
    ])
    metrics = classification_metrics(probabilities, labels, ["a", "b", "c"])
    assert metrics["top1"] == pytest.approx(4 / 6)
    assert metrics["top3"] == 1.0
    assert metrics["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert metrics["per_class"]["b"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8),
                                         "support": 2}
    assert metrics["per_class"]["a"]["precision"] == 0.5 and metrics["per_class"]["a"]["recall"] == 0.5
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_top3_with_two_classes_is_one() -> None:
    metrics = classification_metrics(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([0, 1]), ["a", "b"])
    assert metrics["top1"] == 0.5 and metrics["top3"] == 1.0


def test_plots_are_pngs() -> None:
    history = [{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4},
               {"epoch": 2, "loss": 0.8, "accuracy": 0.6, "val_loss": 0.9, "val_accuracy": 0.5}]
    for png in (curves_png(history, fine_tune_epoch=1), confusion_png([[1, 0], [2, 3]], ["a", "b"]),
                comparison_png([{"label": "lr=0.001", "best_val_accuracy": 0.5, "test_top1": None}])):
        assert Image.open(io.BytesIO(png)).format == "PNG"
