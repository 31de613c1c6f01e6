"""Test-split metrics computed from predictions, and the open-set fit on train + validation embeddings."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from services.trainer.evaluation import (
    classification_metrics,
    comparison_png,
    confusion_png,
    curves_png,
    fit_openset,
    observation_metrics,
    openset_test_figures,
    reliability_png,
)
from shared import openset
from shared.openset import KnnScorer, MahalanobisScorer, OpenSetCard
from shared.training import OpenSetConfig

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
    assert "top5" not in metrics


def test_top5_from_five_classes() -> None:
    probabilities = np.tile(np.array([[0.3, 0.25, 0.2, 0.15, 0.06, 0.04]]), (3, 1))
    metrics = classification_metrics(probabilities, np.array([4, 5, 0]), list("abcdef"))
    assert metrics["top1"] == pytest.approx(1 / 3) and metrics["top3"] == pytest.approx(1 / 3)
    assert metrics["top5"] == pytest.approx(2 / 3)


def embeddings(n_per_class: int, seed: int, n_classes: int = 3, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    return (np.eye(dim)[labels] * 2 + rng.normal(0, 0.3, (len(labels), dim))).astype("float32"), labels


def overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, logits, labels): labels drawn from softmax(z), logits 4 z (too sharp: T should be ~4)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 3))
    labels = (rng.uniform(size=(n, 1)) > openset.softmax(z).cumsum(axis=1)).sum(axis=1)
    features = (np.eye(8)[labels] * 2 + rng.normal(0, 0.3, (n, 8))).astype("float32")
    return features, (4 * z).astype("float32"), labels


def test_the_openset_fit_uses_train_for_the_bank_and_validation_for_thresholds() -> None:
    train, train_labels = embeddings(60, seed=0)
    val, val_logits, val_labels = overconfident(300, seed=1)
    config = OpenSetConfig(method="knn", knn_k=10, bank_size=90)
    fit = fit_openset(train, train_labels, val, val_logits, val_labels, config, fitted_on="validation of x v1")
    assert isinstance(fit.scorer, KnnScorer)
    card = fit.card
    assert card.k == 10 and card.bank_size == 90 and card.feature_dim == 8 and len(fit.scorer.bank) == 90
    assert 0.95 <= card.id_validation_retained <= 1.0
    assert card.id_validation_retained == pytest.approx(float((fit.scorer.score(val) <= card.threshold).mean()))
    assert card.temperature == pytest.approx(4, rel=0.35)  # the logits were 4x too sharp
    assert card.ece_after < card.ece_before
    assert card.validation_images == 300 and card.fitted_on == "validation of x v1"
    assert set(card.comparison) == {"knn", "mahalanobis", "msp", "energy"}
    wrong = (val_logits.argmax(axis=1) != val_labels).any()
    assert wrong and all("error_auroc" in figures for figures in card.comparison.values())
    assert card.comparison["msp"]["error_auroc"] > 0.6  # low confidence flags wrong answers
    assert OpenSetCard.model_validate(card.model_dump(mode="json")) == card
    assert fit.calibration["temperature"] == card.temperature and len(fit.calibration["after"]) == 15
    # a far-away image is out of distribution; test figures are computed with the validation threshold
    far = np.zeros((4, 8), "float32")
    far[:, 7] = 1.0
    assert (fit.scorer.score(far) > card.threshold).all()
    test, test_logits, test_labels = overconfident(600, seed=3)
    figures = openset_test_figures(test_logits, test, test_labels, fit)
    assert figures["test_ece"] < figures["test_ece_uncalibrated"]
    assert 0.8 <= figures["test_novelty_retained"] <= 1.0


def test_the_openset_fit_works_for_a_tiny_model_with_no_errors() -> None:
    train, train_labels = embeddings(4, seed=5, n_classes=2)
    val, val_labels = embeddings(2, seed=6, n_classes=2)
    val_logits = (np.eye(2)[val_labels] * 5).astype("float32")
    knn = fit_openset(train, train_labels, val, val_logits, val_labels, OpenSetConfig(method="knn"), fitted_on="t")
    assert knn.card.k == 2  # 8 training images of 2 classes: k capped at half the smallest class
    fit = fit_openset(train, train_labels, val, val_logits, val_labels, OpenSetConfig(), fitted_on="tiny")
    assert np.isfinite(fit.card.threshold) and fit.card.id_validation_retained == 1.0
    assert all("error_auroc" not in figures for figures in fit.card.comparison.values())
    assert fit.card.uncertain_below == 1.0  # 4 answers cannot vouch for a 90% precision
    assert openset.TEMPERATURE_BOUNDS[0] <= fit.card.temperature <= openset.TEMPERATURE_BOUNDS[1]


def test_plots_are_pngs() -> None:
    history = [{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4},
               {"epoch": 2, "loss": 0.8, "accuracy": 0.6, "val_loss": 0.9, "val_accuracy": 0.5}]
    for png in (curves_png(history, fine_tune_epoch=1), confusion_png([[1, 0], [2, 3]], ["a", "b"]),
                comparison_png([{"label": "lr=0.001", "best_val_accuracy": 0.5, "test_top1": None}])):
        assert Image.open(io.BytesIO(png)).format == "PNG"


def test_reliability_png_is_a_png() -> None:
    logits = np.random.default_rng(5).normal(0, 2, (200, 3))
    labels = np.random.default_rng(6).integers(0, 3, 200)
    before = openset.reliability_bins(openset.softmax(logits, 0.5), labels)
    after = openset.reliability_bins(openset.softmax(logits), labels)
    assert reliability_png(before, after, temperature=2.0)[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_default_novelty_score_is_mahalanobis_and_flags_what_is_far_from_every_class() -> None:
    train, train_labels = embeddings(60, seed=0)
    val, val_logits, val_labels = overconfident(300, seed=1)
    fit = fit_openset(train, train_labels, val, val_logits, val_labels, OpenSetConfig(), fitted_on="v")
    assert isinstance(fit.scorer, MahalanobisScorer) and fit.card.method == "mahalanobis"
    assert fit.card.k is None and fit.card.bank_size is None
    assert 0.95 <= fit.card.id_validation_retained <= 1.0
    far = np.zeros((4, 8), "float32")
    far[:, 7] = 25.0
    assert (fit.scorer.score(far) > fit.card.threshold).all()


# Observation-level figures: six photos of three observations, three classes (hand-made logits).
OBS_LOGITS = np.array([
    [2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [3.0, 0.0, 0.0],  # obs A (class 0): 2 of 3 photos right, the mean right
    [0.0, 1.0, 0.0], [0.0, 0.0, 4.0],  # obs B (class 1): one sharp wrong photo outweighs a soft right one
    [0.0, 2.0, 1.5],  # obs C (class 2), one photo: wrong, 2nd
])
OBS_LABELS = np.array([0, 0, 0, 1, 1, 2])
OBS_IDS = ["A", "A", "A", "B", "B", "C"]


def test_observation_figures_average_the_logits_of_one_observation() -> None:
    per_photo = classification_metrics(openset.softmax(OBS_LOGITS), OBS_LABELS, ["a", "b", "c"])
    assert per_photo["top1"] == pytest.approx(3 / 6)
    figures = observation_metrics(OBS_LOGITS, OBS_LABELS, OBS_IDS)
    # A: mean [1.67, 1, 0] -> 0 (right); B: mean [0, 0.5, 2] -> 2 (wrong, the true class second); C: 1 (wrong)
    assert figures["obs_top1"] == pytest.approx(1 / 3)
    assert figures["obs_top3"] == 1.0 and "obs_top5" not in figures
    assert figures["observations"] == 3 and figures["photos_per_observation"] == 2.0
    assert "obs_novelty_retained" not in figures


def test_observation_figures_can_beat_photo_figures_and_take_a_prefix() -> None:
    logits = np.array([[3.0, 0.0], [0.0, 1.0], [2.5, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 3.0]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    photos = classification_metrics(openset.softmax(logits), labels, ["a", "b"])
    figures = observation_metrics(logits, labels, ["x", "x", "x", "y", "y", "y"], prefix="val_")
    assert photos["top1"] == pytest.approx(4 / 6)
    assert figures == {"val_obs_top1": 1.0, "val_obs_top3": 1.0, "val_observations": 2.0,
                       "val_photos_per_observation": 3.0}


def test_observation_top5_and_temperature_does_not_change_the_answer() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (40, 8))
    labels = rng.integers(0, 8, 40)
    ids = [f"o{i // 4}" for i in range(40)]
    figures = observation_metrics(logits, labels, ids)
    combined = np.stack([logits[i:i + 4].mean(axis=0) for i in range(0, 40, 4)])
    truth = labels[::4]
    expected_top5 = np.mean([truth[i] in np.argsort(-combined[i])[:5] for i in range(10)])
    # ten observations, but labels differ inside them: each (id, label) pair is an observation of its own
    assert figures["observations"] == len({(ids[i], labels[i]) for i in range(40)})
    same_label = np.repeat(truth, 4)
    figures = observation_metrics(logits, same_label, ids)
    assert figures["observations"] == 10 and figures["obs_top5"] == pytest.approx(expected_top5)
    scaled = observation_metrics(logits / 3.7, same_label, ids)  # what a temperature does to every photo
    assert scaled == figures


def test_observation_novelty_is_the_mean_of_its_photos() -> None:
    novelty = np.array([0.5, 0.6, 1.6,  # A: mean 0.9, kept although one photo is over the threshold
                        1.2, 1.3,  # B: mean 1.25, unknown
                        0.2])  # C
    figures = observation_metrics(OBS_LOGITS, OBS_LABELS, OBS_IDS, novelty=novelty)
    assert figures["obs_novelty_retained"] == pytest.approx(2 / 3)


def test_observation_ids_must_match_the_rows() -> None:
    with pytest.raises(ValueError, match="5 observation ids for 6 rows"):
        observation_metrics(OBS_LOGITS, OBS_LABELS, OBS_IDS[:5])
