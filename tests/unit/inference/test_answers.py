"""From readings to an answer: confident, uncertain with the genus, unknown species, or not a mushroom at all."""

from __future__ import annotations

import numpy as np
import pytest

from services.inference.answers import NOT_A_MUSHROOM, UNCERTAIN, UNKNOWN_SPECIES, best_genus, build_answer
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


def answer(probabilities: list[float], relevance: float | None = None, novelty: float | None = None,  # type: ignore[no-untyped-def]
           top_k: int = 3):
    return build_answer(np.array(probabilities), CLASSES, "m-1", top_k, uncertain_below=0.5, irrelevant_above=0.5,
                        relevance=relevance, novelty=novelty)


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


def test_the_gate_refuses_what_is_not_a_fungus_unless_the_model_knows_it() -> None:
    herbarium = answer([0.05, 0.8, 0.1, 0.03, 0.02], relevance=0.07, novelty=1.6)
    assert herbarium.verdict is Verdict.not_a_mushroom and herbarium.predictions == []
    assert herbarium.message == NOT_A_MUSHROOM and herbarium.relevance_score == 0.07 and herbarium.ood_score == 1.6
    # the served model's own kind of photo (drawn species the gate cannot recognise) is answered
    familiar = answer([0.05, 0.8, 0.1, 0.03, 0.02], relevance=0.07, novelty=0.7)
    assert familiar.verdict is Verdict.confident and familiar.predictions[0].label == "Amanita phalloides"
    # without a bank (an old model) the gate decides alone
    assert answer([0.05, 0.8, 0.1, 0.03, 0.02], relevance=0.2).verdict is Verdict.not_a_mushroom
    assert answer([0.05, 0.8, 0.1, 0.03, 0.02], relevance=0.9).verdict is Verdict.confident


def test_a_fungus_unlike_every_class_is_an_unknown_species() -> None:
    unknown = answer([0.05, 0.9, 0.03, 0.01, 0.01], relevance=0.97, novelty=1.3)
    assert unknown.verdict is Verdict.unknown_species and unknown.message == UNKNOWN_SPECIES
    assert unknown.predictions == [] and unknown.genus is None  # a confident softmax does not make it known
    assert answer([0.05, 0.9, 0.03, 0.01, 0.01], relevance=0.97, novelty=0.99).verdict is Verdict.confident


def test_uncertain_is_decided_on_the_calibrated_top_probability() -> None:
    spread = answer([0.2, 0.2, 0.2, 0.2, 0.2], relevance=0.9, novelty=0.5)
    assert spread.verdict is Verdict.uncertain and spread.genus is not None and len(spread.predictions) == 3
    strict = build_answer(np.array([0.05, 0.8, 0.1, 0.03, 0.02]), CLASSES, "m", 3, uncertain_below=0.85,
                          irrelevant_above=0.5, relevance=0.9, novelty=0.5)
    assert strict.verdict is Verdict.uncertain


def test_genus_falls_back_to_the_label_name() -> None:
    classes = [ClassLabel(index=0, name="Morchella esculenta"), ClassLabel(index=1, name="Morchella elata"),
               ClassLabel(index=2, name="Gyromitra esculenta")]
    genus = best_genus(np.array([0.3, 0.3, 0.4]), classes)
    assert (genus.name, genus.probability) == ("Morchella", pytest.approx(0.6))


def test_a_blank_image_is_never_answered_even_when_the_model_finds_it_familiar() -> None:
    flat = build_answer(np.array([0.05, 0.9, 0.03, 0.01, 0.01]), CLASSES, "m", 3, uncertain_below=0.5,
                        irrelevant_above=0.5, relevance=0.0, novelty=0.4, blank=True)
    assert flat.verdict is Verdict.not_a_mushroom and flat.predictions == []
