"""Open-set scores, calibration and thresholds (shared/openset.py) on synthetic numbers with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared import openset
from shared.openset import KnnScorer

pytestmark = pytest.mark.unit


def clusters(n_per_class: int = 100, n_classes: int = 3, dim: int = 16, spread: float = 0.05,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tight clusters around orthogonal directions: every class is a different corner of the sphere."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    centres = np.eye(dim)[:n_classes] * 3.0
    return (centres[labels] + rng.normal(0, spread, (len(labels), dim))).astype("float32"), labels


def sampled_labels(logits: np.ndarray, temperature: float, seed: int = 0) -> np.ndarray:
    """Labels drawn from softmax(logits / T): a set that is perfectly calibrated at temperature T."""
    probs = openset.softmax(logits, temperature)
    rng = np.random.default_rng(seed)
    cumulative = probs.cumsum(axis=1)
    return (rng.uniform(size=(len(probs), 1)) > cumulative).sum(axis=1)


def test_softmax_is_stable_and_temperature_flattens() -> None:
    logits = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    probs = openset.softmax(logits)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert probs[0, 0] == pytest.approx(1.0)
    assert openset.softmax(logits, 10.0)[1].max() < probs[1].max()


def test_l2_normalise_gives_unit_rows_and_leaves_zero_rows_zero() -> None:
    out = openset.l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_knn_distance_of_a_bank_point_is_zero_and_of_a_far_point_large() -> None:
    features, labels = clusters()
    scorer = KnnScorer.fit(features, labels, k=1)
    assert scorer.k == 1
    assert scorer.score(features[:5]) == pytest.approx(np.zeros(5), abs=1e-3)
    far = np.zeros((1, 16), "float32")
    far[0, 10] = 1.0  # a direction no class lies in: ~sqrt(2) from every bank point
    assert scorer.score(far)[0] > 1.3
    assert scorer.score(far)[0] > 10 * scorer.score(features[:50]).max()


def test_knn_chunks_give_the_same_scores_as_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    features, labels = clusters(n_per_class=40)
    queries = clusters(n_per_class=10, seed=1)[0]
    scorer = KnnScorer.fit(features, labels, k=5)
    whole = scorer.score(queries)
    monkeypatch.setattr(openset, "_CHUNK_ELEMENTS", 7 * len(scorer.bank))  # 7 query rows per block
    # float32: a distance comes from sqrt(2 - 2 cos), so a cosine's rounding (~1e-7, which BLAS may order
    # differently for another block shape) moves a distance of 0.06 by ~2e-6
    np.testing.assert_allclose(scorer.score(queries), whole, rtol=1e-5, atol=1e-5)
    # brute force: the 5th smallest pairwise distance
    bank = openset.l2_normalise(features)
    brute = np.sort(np.linalg.norm(openset.l2_normalise(queries)[:, None] - bank[None], axis=2), axis=1)[:, 4]
    np.testing.assert_allclose(whole, brute, atol=1e-3)


def test_knn_bank_is_capped_stratified_and_k_fits_the_bank() -> None:
    features, labels = clusters(n_per_class=100)
    scorer = KnnScorer.fit(features, labels, k=50, bank_size=30, seed=3)
    assert scorer.bank.shape == (30, 16) and scorer.bank.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(scorer.bank, axis=1), 1.0, rtol=1e-5)
    # stratified: 10 rows from each class (each class is one direction)
    assert sorted(np.bincount(scorer.bank.argmax(axis=1))[:3].tolist()) == [10, 10, 10]
    assert scorer.k == 5  # capped at half the smallest class (10 rows each)
    tiny = KnnScorer.fit(features[:2], labels[:2], k=50)
    assert tiny.k == 1
    assert KnnScorer.fit(features[:1], labels[:1], k=50).k == 1


def test_knn_save_load_round_trip(tmp_path: Path) -> None:
    features, labels = clusters()
    scorer = KnnScorer.fit(features, labels, k=7, bank_size=120)
    scorer.save(tmp_path / "openset.npz")
    loaded = KnnScorer.load(tmp_path / "openset.npz")
    assert loaded.k == 7
    np.testing.assert_array_equal(loaded.bank, scorer.bank)
    np.testing.assert_array_equal(loaded.score(features[:10]), scorer.score(features[:10]))


def test_knn_refuses_features_of_another_width() -> None:
    scorer = KnnScorer.fit(*clusters())
    with pytest.raises(ValueError, match="dimensions"):
        scorer.score(np.ones((1, 8)))


def test_mahalanobis_is_small_in_a_class_and_large_outside() -> None:
    features, labels = clusters(spread=0.3)
    means, precision = openset.mahalanobis_fit(features, labels)
    assert means.shape == (3, 16) and precision.shape == (16, 16)
    inside = openset.mahalanobis_score(clusters(spread=0.3, seed=1)[0], means, precision)
    outside = openset.mahalanobis_score(np.full((5, 16), 1.5), means, precision)
    assert np.median(inside) < 40 and outside.min() > 5 * np.median(inside)
    assert openset.auroc(inside, outside) == 1.0


def test_msp_and_energy_rank_a_flat_answer_as_more_ood() -> None:
    confident, flat = np.array([[10.0, 0.0, 0.0]]), np.array([[1.0, 1.0, 1.0]])
    assert openset.msp_score(flat)[0] > openset.msp_score(confident)[0]
    assert openset.msp_score(confident)[0] == pytest.approx(-openset.softmax(confident).max())
    assert openset.energy_score(flat)[0] > openset.energy_score(confident)[0]
    assert openset.energy_score(flat)[0] == pytest.approx(-(1 + np.log(3)))


@pytest.mark.parametrize("true_temperature", [0.5, 2.5])
def test_temperature_recovers_the_temperature_the_labels_were_drawn_with(true_temperature: float) -> None:
    logits = np.random.default_rng(1).normal(0, 3, (4000, 5))
    labels = sampled_labels(logits, true_temperature, seed=2)
    fitted = openset.fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.1)


def test_ece_is_near_zero_when_calibrated_and_large_when_overconfident() -> None:
    logits = np.random.default_rng(3).normal(0, 2, (5000, 4))
    labels = sampled_labels(logits, 1.0, seed=4)
    assert openset.expected_calibration_error(openset.softmax(logits), labels) < 0.03
    overconfident = openset.softmax(logits, 0.25)  # sharper than the labels were drawn with
    assert openset.expected_calibration_error(overconfident, labels) > 0.1
    # temperature scaling repairs it
    fitted = openset.fit_temperature(logits * 4, labels)
    assert openset.expected_calibration_error(openset.softmax(logits * 4, fitted), labels) < 0.03


def test_reliability_bins_count_every_answer_once() -> None:
    probs = np.array([[0.95, 0.05], [0.55, 0.45], [0.6, 0.4], [0.5, 0.5]])
    labels = np.array([0, 1, 0, 0])
    rows = openset.reliability_bins(probs, labels, bins=10)
    assert len(rows) == 10 and sum(row["count"] for row in rows) == 4
    top = rows[9]
    assert top["count"] == 1 and top["confidence"] == pytest.approx(0.95) and top["accuracy"] == 1.0
    assert rows[0]["confidence"] is None and rows[0]["accuracy"] is None
    assert rows[5]["count"] == 2 and rows[5]["accuracy"] == 0.5  # 0.55 (wrong) and 0.6 (right)


def test_threshold_at_retention_keeps_the_asked_share() -> None:
    scores = np.random.default_rng(6).exponential(size=1000)
    threshold = openset.threshold_at_retention(scores, 0.95)
    kept = (scores <= threshold).mean()
    assert 0.95 <= kept <= 0.952
    assert openset.threshold_at_retention(scores[:20], 0.95) == scores[:20].max()  # small n: keeps at least 95%


def test_uncertain_below_is_the_lowest_confidence_that_still_meets_the_precision() -> None:
    confidence = np.linspace(0.3, 1.0, 100)
    correct = confidence > 0.6  # everything above 0.6 is right, everything below wrong
    threshold = openset.fit_uncertain_below(confidence, correct, precision=0.9)
    answered = confidence >= threshold
    assert correct[answered].mean() >= 0.9
    assert 0.5 < threshold < 0.6  # a few wrong answers fit under a 90% precision, not many
    lower = confidence[confidence < threshold].max()
    assert correct[confidence >= lower].mean() < 0.9  # one step lower would miss the target


def test_uncertain_below_is_one_when_no_threshold_reaches_the_precision() -> None:
    assert openset.fit_uncertain_below(np.linspace(0.5, 1, 50), np.zeros(50, bool), precision=0.9) == 1.0
    # right answers, but too few to vouch for a precision
    assert openset.fit_uncertain_below(np.array([0.9, 0.8]), np.array([True, True]), precision=0.9) == 1.0


def test_auroc_and_fpr_of_separable_identical_and_reversed_sets() -> None:
    id_scores, ood_scores = np.arange(100.0), np.arange(100.0) + 1000
    assert openset.auroc(id_scores, ood_scores) == 1.0
    assert openset.auroc(ood_scores, id_scores) == 0.0
    assert openset.auroc(id_scores, id_scores.copy()) == pytest.approx(0.5)
    assert openset.fpr_at_95_tpr(id_scores, ood_scores) == 0.0
    assert openset.fpr_at_95_tpr(id_scores, id_scores.copy()) >= 0.95
    rng = np.random.default_rng(7)
    overlapping = openset.auroc(rng.normal(0, 1, 2000), rng.normal(1, 1, 2000))
    assert overlapping == pytest.approx(0.76, abs=0.03)  # Phi(1 / sqrt 2)


def test_mahalanobis_scorer_round_trips_and_load_scorer_tells_the_methods_apart(tmp_path: Path) -> None:
    features, labels = clusters()
    scorer = openset.MahalanobisScorer.fit(features, labels)
    near, far = features[:5], features[:5] * 0 + 40.0
    assert (scorer.score(far) > scorer.score(near).max() * 10).all()
    scorer.save(tmp_path / "m.npz")
    loaded = openset.load_scorer(tmp_path / "m.npz")
    assert isinstance(loaded, openset.MahalanobisScorer)
    np.testing.assert_allclose(loaded.score(features[:20]), scorer.score(features[:20]), rtol=1e-5)
    KnnScorer.fit(features, labels, k=3).save(tmp_path / "k.npz")
    assert isinstance(openset.load_scorer(tmp_path / "k.npz"), KnnScorer)
