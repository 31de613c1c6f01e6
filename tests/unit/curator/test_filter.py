"""The irrelevant-image filter on fixture-web images of seeds it was not calibrated on."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from services.curator.filter.calibrate import synthetic_set
from services.curator.filter.learned import N_FEATURES, learned_features, train_learned
from services.curator.filter.logistic import precision_recall
from services.curator.filter.stats import irrelevant_score, thumbnail

pytestmark = pytest.mark.unit

HELD_OUT = range(7_000_000, 7_000_160)  # calibration used seeds 0..599


@pytest.fixture(scope="module")
def held_out() -> tuple[list[Image.Image], np.ndarray]:
    return synthetic_set(HELD_OUT)


def test_stage1_precision_and_recall_on_held_out_seeds(held_out: tuple[list[Image.Image], np.ndarray]) -> None:
    images, labels = held_out
    scores = np.array([irrelevant_score(image) for image in images])
    precision, recall = precision_recall(scores, labels, 0.5)
    assert labels.sum() == 160 and (labels == 0).sum() == 160
    assert precision >= 0.95
    assert recall >= 0.90


def test_stage1_on_species_it_never_saw() -> None:
    """A 20-species catalog (calibration saw the 10-species one) on held-out seeds."""
    images, labels = synthetic_set(range(8_000_000, 8_000_060), n_classes=20)
    precision, recall = precision_recall(np.array([irrelevant_score(image) for image in images]), labels, 0.5)
    assert precision >= 0.95 and recall >= 0.90


@pytest.mark.parametrize("image", [
    Image.new("RGB", (1, 1), (255, 255, 255)),
    Image.new("L", (300, 20), 128),
    Image.new("RGBA", (50, 80), (10, 200, 30, 0)),
    Image.new("CMYK", (64, 64)),
    Image.new("P", (2000, 3)),
])
def test_stage1_score_is_a_probability_for_any_image(image: Image.Image) -> None:
    score = irrelevant_score(image)
    assert isinstance(score, float) and 0.0 <= score <= 1.0


def test_blank_paper_is_irrelevant_and_green_texture_is_not() -> None:
    rng = np.random.default_rng(0)
    paper = np.clip(rng.normal(235, 4, (200, 150, 3)), 0, 255).astype(np.uint8)
    moss = np.clip(rng.normal((60, 120, 40), 30, (200, 150, 3)), 0, 255).astype(np.uint8)
    assert irrelevant_score(Image.fromarray(paper)) > 0.5
    assert irrelevant_score(Image.fromarray(moss)) < 0.5


def test_stage2_learns_from_labels_and_reports_held_out_metrics(
        held_out: tuple[list[Image.Image], np.ndarray]) -> None:
    images, labels = held_out
    features = np.stack([learned_features(thumbnail(image)) for image in images])
    assert features.shape == (len(images), N_FEATURES)
    ids = [f"img-{i}" for i in range(len(images))]
    # Labels of the first 200, the remaining 120 are an unlabelled pool of which stage 1 is confident.
    pool_stage1 = np.array([irrelevant_score(image) for image in images[200:]])
    model, card = train_learned(ids[:200], features[:200], labels[:200].astype(float), features[200:], pool_stage1)
    assert card.held_out > 0 and card.precision is not None and card.recall is not None
    assert card.precision >= 0.95 and card.recall >= 0.90
    assert card.train_size == card.human_labels - card.held_out + card.confident_cases
    precision, recall = precision_recall(model.predict(features[200:]), labels[200:], 0.5)
    assert precision >= 0.95 and recall >= 0.90


def test_stage2_refuses_one_class_only() -> None:
    x = np.zeros((4, N_FEATURES), np.float32)
    with pytest.raises(ValueError, match="both relevant and irrelevant"):
        train_learned(["a", "b", "c", "d"], x, np.zeros(4), np.zeros((0, N_FEATURES), np.float32), np.zeros(0))
