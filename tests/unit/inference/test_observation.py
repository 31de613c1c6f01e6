"""One answer for several photos of one mushroom: the mean of the mushroom photos' logits, then the verdict."""

from __future__ import annotations

import numpy as np
import pytest

from services.inference.answers import (
    NO_MUSHROOM_PHOTO,
    NOT_A_MUSHROOM,
    PhotoReading,
    build_answer,
    observation_answer,
)
from services.inference.schemas import Verdict
from shared import openset
from shared.observations import combine_by_observation, combine_logits, combine_novelty
from tests.unit.inference.test_answers import CLASSES

pytestmark = pytest.mark.unit

TEMPERATURE = 1.5


def observe(*readings: PhotoReading, top_k: int = 3):  # type: ignore[no-untyped-def]
    return observation_answer(list(readings), CLASSES, "m-1", top_k, uncertain_below=0.5, irrelevant_above=0.5,
                              temperature=TEMPERATURE)


def photo(logits: list[float], novelty: float | None = 0.5, relevance: float | None = 0.9,
          blank: bool = False) -> PhotoReading:
    return PhotoReading(np.array(logits), novelty, relevance, blank, "gate-1", "p.jpg")


@pytest.mark.parametrize(("logits", "novelty", "relevance", "blank"), [
    ([0.0, 4.0, 1.0, 0.0, 0.0], 0.5, 0.9, False),  # confident
    ([1.0, 1.2, 1.1, 0.9, 0.0], 0.5, 0.9, False),  # uncertain
    ([0.0, 4.0, 1.0, 0.0, 0.0], 1.7, 0.9, False),  # unknown species
    ([0.0, 4.0, 1.0, 0.0, 0.0], 0.5, 0.1, False),  # irrelevant by the gate but familiar: answered
    ([0.0, 4.0, 1.0, 0.0, 0.0], None, None, False),  # no bank, no gate
])
def test_one_photo_gets_the_single_photo_answer(logits: list[float], novelty: float | None,
                                                relevance: float | None, blank: bool) -> None:
    single = build_answer(openset.softmax(np.array(logits), TEMPERATURE), CLASSES, "m-1", 3, 0.5, 0.5, relevance,
                          novelty, "gate-1", blank)
    combined = observe(photo(logits, novelty, relevance, blank))
    assert (combined.verdict, combined.message, combined.predictions, combined.genus, combined.ood_score) == (
        single.verdict, single.message, single.predictions, single.genus, single.ood_score)
    assert combined.photos_combined == 1 and combined.photos[0].prediction == single
    assert combined.combination == "mean_logits"


def test_two_photos_combine_by_the_mean_of_their_logits() -> None:
    soft_right = [0.0, 0.0, 2.0, 1.6, 0.0]  # Boletus edulis, barely
    sharp_other = [0.0, 0.0, 1.0, 5.0, 0.0]  # Boletus aereus, clearly
    alone = observe(photo(soft_right))
    assert alone.predictions[0].label == "Boletus edulis"
    both = observe(photo(soft_right), photo(sharp_other))
    expected = openset.softmax(np.array([0.0, 0.0, 1.5, 3.3, 0.0]), TEMPERATURE)
    assert both.photos_combined == 2 and [p.combined for p in both.photos] == [True, True]
    assert both.predictions[0].label == "Boletus aereus"
    assert both.predictions[0].probability == pytest.approx(float(expected[3]), abs=1e-6)
    mean_of_probabilities = (openset.softmax(np.array(soft_right), TEMPERATURE)
                             + openset.softmax(np.array(sharp_other), TEMPERATURE)) / 2
    assert abs(both.predictions[0].probability - mean_of_probabilities[3]) > 0.01  # not the other rule
    assert both.verdict is Verdict.confident and both.ood_score == pytest.approx(0.5)


def test_photos_that_are_not_mushrooms_are_left_out_and_reported() -> None:
    mushroom = [0.0, 0.0, 0.0, 0.0, 3.0]
    envelope = [6.0, 0.0, 0.0, 0.0, 0.0]  # the model would say Amanita muscaria, loudly
    answer = observe(photo(mushroom), photo(envelope, novelty=2.5, relevance=0.05), photo(mushroom, blank=True))
    assert [p.combined for p in answer.photos] == [True, False, False]
    assert answer.photos[1].prediction.verdict is Verdict.not_a_mushroom
    assert answer.photos[1].prediction.message == NOT_A_MUSHROOM and answer.photos[1].prediction.predictions == []
    assert answer.photos_combined == 1
    alone = observe(photo(mushroom))
    assert answer.predictions == alone.predictions and answer.verdict is alone.verdict


def test_no_mushroom_photo_gives_no_guess() -> None:
    answer = observe(photo([5.0, 0, 0, 0, 0], novelty=3.0, relevance=0.1), photo([0, 5.0, 0, 0, 0], blank=True))
    assert answer.verdict is Verdict.not_a_mushroom and answer.message == NO_MUSHROOM_PHOTO
    assert answer.predictions == [] and answer.photos_combined == 0 and answer.ood_score is None
    assert [p.prediction.verdict for p in answer.photos] == [Verdict.not_a_mushroom] * 2


def test_the_open_set_verdict_is_of_the_combined_novelty() -> None:
    logits = [0.0, 5.0, 0.0, 0.0, 0.0]
    unknown = observe(photo(logits, novelty=0.8), photo(logits, novelty=1.4))  # mean 1.1
    assert unknown.verdict is Verdict.unknown_species and unknown.predictions == []
    assert unknown.ood_score == pytest.approx(1.1)
    assert [p.prediction.verdict for p in unknown.photos] == [Verdict.confident, Verdict.unknown_species]
    known = observe(photo(logits, novelty=0.5), photo(logits, novelty=1.3))  # mean 0.9: one odd photo
    assert known.verdict is Verdict.confident and known.ood_score == pytest.approx(0.9)


def test_log_probabilities_combine_exactly_like_logits() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4, 7))
    log_probabilities = np.log(openset.softmax(logits, TEMPERATURE))
    assert np.allclose(openset.softmax(combine_logits(log_probabilities)),
                       openset.softmax(combine_logits(logits), TEMPERATURE))


def test_combining_needs_a_photo_and_keys_observations_by_id_and_label() -> None:
    with pytest.raises(ValueError, match="at least one photo"):
        combine_logits(np.zeros((0, 3)))
    assert combine_novelty([0.5, 1.5]) == 1.0 and combine_novelty([None, None]) is None
    logits = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    combined, labels, groups = combine_by_observation(logits, ["a", "a", "a", "b"], np.array([0, 0, 1, 1]))
    assert combined.tolist() == [[2.0, 0.0], [0.0, 1.0], [0.0, 2.0]]
    assert labels.tolist() == [0, 1, 1] and [g.tolist() for g in groups] == [[0, 1], [2], [3]]
