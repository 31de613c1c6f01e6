"""Judging a trained model: open-set fitting on train + validation, test-split metrics, and the plots a person
reads.

Order matters for honesty (scikit-learn's habit): the kNN bank comes from the train split; the temperature,
the OOD threshold and the "uncertain" threshold from the validation split; the test split is only read to
report, with everything already fixed.

Figures come per photo and per observation (``observation_metrics``: the photos of one observation combined by
averaging their logits, shared/observations.py, the rule ``POST /predict/observation`` serves).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from shared import observations, openset
from shared.openset import KnnScorer, MahalanobisScorer, NoveltyScorer, OpenSetCard
from shared.training import OpenSetConfig

logger = logging.getLogger(__name__)

CALIBRATION_BINS = 15


@dataclass
class OpenSetFit:
    """What the job fitted for open-set answers: the scorer (openset.npz), the card, and calibration.json."""

    scorer: NoveltyScorer
    card: OpenSetCard
    calibration: dict[str, Any]


def fit_openset(
    train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray, val_logits: np.ndarray,
    val_labels: np.ndarray, config: OpenSetConfig, fitted_on: str, seed: int = 0,
) -> OpenSetFit:
    """Novelty scorer on train; temperature, OOD threshold and uncertainty threshold on validation."""
    knn = KnnScorer.fit(train_features, train_labels, k=config.knn_k, bank_size=config.bank_size, seed=seed)
    scorer: NoveltyScorer = knn if config.method == "knn" else MahalanobisScorer.fit(train_features, train_labels)
    temperature = openset.fit_temperature(val_logits, val_labels)
    if not 1.01 * openset.TEMPERATURE_BOUNDS[0] < temperature < 0.99 * openset.TEMPERATURE_BOUNDS[1]:
        logger.warning("temperature %.3f is at its bound: the validation logits barely inform the answer (too "
                       "few validation images, or an undertrained model)", temperature)
    before, after = openset.softmax(val_logits), openset.softmax(val_logits, temperature)
    bins_before = openset.reliability_bins(before, val_labels, CALIBRATION_BINS)
    bins_after = openset.reliability_bins(after, val_labels, CALIBRATION_BINS)
    ece_before = openset.expected_calibration_error(before, val_labels, CALIBRATION_BINS)
    ece_after = openset.expected_calibration_error(after, val_labels, CALIBRATION_BINS)
    correct = after.argmax(axis=1) == val_labels
    uncertain_below = openset.fit_uncertain_below(after.max(axis=1), correct, config.confident_precision)
    novelty = scorer.score(val_features)
    threshold = openset.threshold_at_retention(novelty, config.id_retention)
    retained = float((novelty <= threshold).mean())
    comparison = method_comparison(train_features, train_labels, val_features, val_logits, correct, temperature,
                                   knn.score(val_features), config.id_retention)
    card = OpenSetCard(
        method=config.method, k=knn.k if config.method == "knn" else None,
        bank_size=len(knn.bank) if config.method == "knn" else None, feature_dim=scorer.feature_dim,
        threshold=threshold,
        id_retention=config.id_retention, id_validation_retained=retained, temperature=temperature,
        uncertain_below=uncertain_below, precision_target=config.confident_precision, ece_before=ece_before,
        ece_after=ece_after, validation_images=len(val_labels), fitted_on=fitted_on, fitted_at=datetime.now(UTC),
        comparison=comparison,
    )
    calibration = {"temperature": temperature, "bins": CALIBRATION_BINS, "fitted_on": fitted_on,
                   "validation_images": len(val_labels), "ece_before": ece_before, "ece_after": ece_after,
                   "before": bins_before, "after": bins_after}
    logger.info("open set: %s novelty, threshold %.4f keeps %.3f of validation; T=%.3f, ECE %.4f -> %.4f, "
                "uncertain below %.3f", config.method, threshold, retained, temperature, ece_before, ece_after,
                uncertain_below)
    return OpenSetFit(scorer=scorer, card=card, calibration=calibration)


def method_comparison(
    train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray, val_logits: np.ndarray,
    val_correct: np.ndarray, temperature: float, knn_scores: np.ndarray, id_retention: float,
) -> dict[str, dict[str, float]]:
    """Per OOD method, figures that validation alone can give honestly: its threshold at ``id_retention``, the
    share kept, and (when there are errors) the AUROC of telling wrong answers from right ones.

    Real OOD figures need OOD photos, which training does not have: the benchmark reports those.
    """
    means, precision = openset.mahalanobis_fit(train_features, train_labels)
    scores = {
        "knn": knn_scores,
        "mahalanobis": openset.mahalanobis_score(val_features, means, precision),
        "msp": openset.msp_score(val_logits, temperature),  # on calibrated probabilities, as served
        "energy": openset.energy_score(val_logits),  # T = 1, the paper's default
    }
    comparison: dict[str, dict[str, float]] = {}
    for method, values in scores.items():
        threshold = openset.threshold_at_retention(values, id_retention)
        figures = {"threshold": threshold, "validation_retained": float((values <= threshold).mean())}
        if val_correct.any() and not val_correct.all():
            figures["error_auroc"] = openset.auroc(values[val_correct], values[~val_correct])
        comparison[method] = figures
    return comparison


def openset_test_figures(
    test_logits: np.ndarray, test_features: np.ndarray, labels: np.ndarray, fit: OpenSetFit,
) -> dict[str, float]:
    """Test figures under the validation-fitted temperature and threshold: reported, never used to choose."""
    calibrated = openset.softmax(test_logits, fit.card.temperature)
    return {
        "test_ece_uncalibrated": openset.expected_calibration_error(openset.softmax(test_logits), labels,
                                                                    CALIBRATION_BINS),
        "test_ece": openset.expected_calibration_error(calibrated, labels, CALIBRATION_BINS),
        "test_novelty_retained": float((fit.scorer.score(test_features) <= fit.card.threshold).mean()),
        "test_uncertain_share": float((calibrated.max(axis=1) < fit.card.uncertain_below).mean()),
    }


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """top-1, top-3 (top-5 from 5 classes), macro F1, per-class precision/recall/F1 and the confusion matrix
    (rows: true class)."""
    n_classes = len(class_names)
    predicted = probabilities.argmax(axis=1)
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
        "top3": top_k_accuracy(probabilities, labels, min(3, n_classes)),
        **({"top5": top_k_accuracy(probabilities, labels, 5)} if n_classes >= 5 else {}),
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "test_images": total,
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose true class is among the ``k`` highest scores (logits or probabilities alike)."""
    if not len(labels):
        return 0.0
    ranked = np.argsort(-scores, axis=1)[:, :k]
    return float((ranked == labels[:, None]).any(axis=1).mean())


def observation_metrics(logits: np.ndarray, labels: np.ndarray, observation_ids: Sequence[str],
                        novelty: np.ndarray | None = None, prefix: str = "") -> dict[str, float]:
    """Observation-level figures: the photos of one observation combined by the mean of their logits.

    ``logits``, ``labels``, ``observation_ids`` and ``novelty`` (score / fitted threshold per photo) are rows of
    one split in the same order. Keys: ``{prefix}obs_top1``, ``obs_top3``, ``obs_top5`` (from 5 classes, as
    per photo), ``observations``, ``photos_per_observation`` and, with novelty, ``obs_novelty_retained``
    (the share of observations the mean-novelty rule answers, under the threshold fitted on single photos).
    The temperature does not enter: it rescales the mean logits and keeps their order.
    """
    combined, combined_labels, groups = observations.combine_by_observation(logits, observation_ids, labels)
    n_classes = logits.shape[1]
    figures = {
        "obs_top1": top_k_accuracy(combined, combined_labels, 1),
        "obs_top3": top_k_accuracy(combined, combined_labels, min(3, n_classes)),
        **({"obs_top5": top_k_accuracy(combined, combined_labels, 5)} if n_classes >= 5 else {}),
        "observations": float(len(groups)),
        "photos_per_observation": float(len(labels) / len(groups)) if groups else 0.0,
    }
    if novelty is not None:
        ratios = [observations.combine_novelty(novelty[rows].tolist()) for rows in groups]
        figures["obs_novelty_retained"] = float(np.mean([ratio <= 1.0 for ratio in ratios if ratio is not None])
                                                ) if groups else 0.0
    return {f"{prefix}{name}": value for name, value in figures.items()}


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


def reliability_png(before_bins: list[dict[str, Any]], after_bins: list[dict[str, Any]],
                    temperature: float | None = None) -> bytes:
    """Reliability diagrams before and after temperature scaling: accuracy per confidence bin vs the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.5))
    after_title = f"after (T = {temperature:.2f})" if temperature is not None else "after temperature scaling"
    for axis, rows, title in zip(figure.subplots(1, 2), (before_bins, after_bins), ("before", after_title),
                                 strict=True):
        filled = [row for row in rows if row["count"]]
        width = [row["upper"] - row["lower"] for row in filled]
        axis.bar([row["lower"] for row in filled], [row["accuracy"] for row in filled], width=width, align="edge",
                 edgecolor="black", alpha=0.7, label="accuracy")
        axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
        axis.plot([row["confidence"] for row in filled], [row["accuracy"] for row in filled], "o", color="black",
                  markersize=3, label="mean confidence")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_xlabel("confidence (top-1 probability)")
        axis.set_ylabel("accuracy")
        axis.set_title(f"{title}: ECE {openset.ece_of_bins(rows):.3f}")
        axis.legend(loc="upper left", fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()
