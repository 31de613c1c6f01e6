"""From probabilities to an answer: confident, uncertain with the genus, or not a mushroom at all."""

from __future__ import annotations

import numpy as np
import pytest

from services.inference.core.answers import NOT_A_MUSHROOM, UNCERTAIN, best_genus, build_answer, ood_score
from services.inference.schemas import SAFETY_NOTICE, Verdict
from shared.registry import ClassLabel

pytestmark = pytest.mark.unit

CLASSES = [
    ClassLabel(index=0, name="Amanita muscaria", species="Amanita muscaria", genus="Amanita", family="Amanitaceae"),
    ClassLabel(index=1, name="Amanita phalloides", species="Amanita phalloides", genus="Amanita",
               family="Amanitaceae"),
    ClassLabel(index=2, name="Boletus edulis", species="Boletus edulis", genus="Boletus", family="Boletaceae"),
    ClassLabel(index=3, name="Boletus aereus", species="Boletus aereus", genus="Boletus", family="Boletaceae"),
    ClassLabel(index=4, name="Cantharellus cibarius", species="Cantharellus cibarius", genus="Cantharellus",
               family="Cantharellaceae"),
]


def answer(probabilities: list[float], irrelevant: float | None = None, top_k: int = 3):  # type: ignore[no-untyped-def]
    return build_answer(np.array(probabilities), CLASSES, "m-1", top_k, uncertain_below=0.5, ood_above=0.9,
                        irrelevant=irrelevant, irrelevant_above=0.5)


def test_ood_score_is_normalised_entropy() -> None:
    assert ood_score(np.array([1.0, 0, 0, 0])) == pytest.approx(0, abs=1e-6)
    assert ood_score(np.full(4, 0.25)) == pytest.approx(1.0)
    assert 0 < ood_score(np.array([0.7, 0.1, 0.1, 0.1])) < 1


def test_confident_answer_lists_top_k_with_taxa() -> None:
    result = answer([0.05, 0.8, 0.1, 0.03, 0.02])
    assert result.verdict is Verdict.confident and result.genus is None
    assert [p.label for p in result.predictions] == ["Amanita phalloides", "Boletus edulis", "Amanita muscaria"]
    top = result.predictions[0]
    assert (top.species, top.genus, top.family, top.probability) == (
        "Amanita phalloides", "Amanita", "Amanitaceae", pytest.approx(0.8))
    assert result.safety_notice == SAFETY_NOTICE and "Never eat" in SAFETY_NOTICE


def test_uncertain_answer_gives_the_genus_the_sums_support() -> None:
    # No species reaches 0.5, and the single best species (Boletus edulis) is not in the best genus.
    result = answer([0.3, 0.3, 0.35, 0.0, 0.05])
    assert result.verdict is Verdict.uncertain and result.message == UNCERTAIN
    assert result.predictions[0].label == "Boletus edulis"
    assert result.genus is not None
    assert (result.genus.name, result.genus.family) == ("Amanita", "Amanitaceae")
    assert result.genus.probability == pytest.approx(0.6)


def test_not_a_mushroom_by_ood_or_by_the_irrelevant_filter() -> None:
    spread = answer([0.2, 0.2, 0.2, 0.2, 0.2])  # no curator filter: entropy alone decides
    assert spread.verdict is Verdict.not_a_mushroom and spread.predictions == [] and spread.message == NOT_A_MUSHROOM
    # with the filter saying "field photo", a spread-out answer is uncertain, not "not a mushroom"
    spread_photo = answer([0.2, 0.2, 0.2, 0.2, 0.2], irrelevant=0.1)
    assert spread_photo.verdict is Verdict.uncertain and spread_photo.genus is not None
    assert len(spread_photo.predictions) == 3
    herbarium = answer([0.05, 0.8, 0.1, 0.03, 0.02], irrelevant=0.93)
    assert herbarium.verdict is Verdict.not_a_mushroom and herbarium.irrelevant_score == 0.93
    field_photo = answer([0.05, 0.8, 0.1, 0.03, 0.02], irrelevant=0.1)
    assert field_photo.verdict is Verdict.confident


def test_genus_falls_back_to_the_label_name() -> None:
    classes = [ClassLabel(index=0, name="Morchella esculenta"), ClassLabel(index=1, name="Morchella elata"),
               ClassLabel(index=2, name="Gyromitra esculenta")]
    genus = best_genus(np.array([0.3, 0.3, 0.4]), classes)
    assert (genus.name, genus.probability) == ("Morchella", pytest.approx(0.6))
