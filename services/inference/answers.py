"""Turning a model's and the relevance gate's readings into an answer.

The order of the questions (shared/DESIGN.md, "Image judgements"):

0. A blank image (a flat colour) is a photo of nothing -> ``not_a_mushroom``.
1. Is it a photo of a fungus? The gate's relevance under ``1 - irrelevant_above`` means no, unless the served
   model finds the photo familiar (its kNN distance within the threshold fitted on validation): a model's own
   classes need not look like ImageNet's fungi (the demo's drawn species do not), and what it was trained on
   is answered. -> ``not_a_mushroom``.
2. Is it one of the species this model knows? A kNN distance over the threshold -> ``unknown_species``.
3. How sure is it? The calibrated top probability under ``uncertain_below`` -> ``uncertain`` with the genus
   the summed probabilities support; else ``confident``.

An observation (several photos of one mushroom, :func:`observation_answer`) asks question 0-1 of each photo:
a photo that is not a mushroom by the single-photo rule is left out of the combination and reported as such.
Questions 2-3 are asked once, of the combined reading: the mean of the remaining photos' logits (softmax with
the model's temperature) and the mean of their novelty ratios (shared/observations.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.inference.schemas import (
    ClassPrediction,
    GroupPrediction,
    ObservationPhoto,
    ObservationPrediction,
    Prediction,
    Verdict,
)
from shared import openset
from shared.observations import COMBINATION, combine_logits, combine_novelty
from shared.registry import ClassLabel

CONFIDENT = "the model is confident about the species"
UNCERTAIN = "uncertain: no species is likely enough; the genus below is what the probabilities support"
UNKNOWN_SPECIES = ("this looks like a mushroom, but unlike every species this model was trained on: it may be "
                   "one it does not know, so it does not name one")
NOT_A_MUSHROOM = "this does not look like a photo of a mushroom, so the model does not guess"
NO_MUSHROOM_PHOTO = "none of these photos looks like a photo of a mushroom, so the model does not guess"


def genus_of(label: ClassLabel) -> str:
    if label.genus:
        return label.genus
    return label.name.split(" ")[0] if label.species or " " in label.name else label.name


def best_genus(probabilities: np.ndarray, classes: list[ClassLabel]) -> GroupPrediction:
    totals: dict[str, float] = defaultdict(float)
    families: dict[str, str | None] = {}
    for label in classes:
        genus = genus_of(label)
        totals[genus] += float(probabilities[label.index])
        families[genus] = label.family
    name = max(totals, key=lambda genus: totals[genus])
    return GroupPrediction(name=name, probability=round(totals[name], 6), family=families[name])


def class_prediction(label: ClassLabel, probability: float) -> ClassPrediction:
    return ClassPrediction(label=label.name, probability=round(probability, 6), species=label.species,
                           genus=label.genus, family=label.family)


def decide(relevance: float | None, novelty: float | None, top_probability: float, uncertain_below: float,
           irrelevant_above: float, blank: bool = False) -> Verdict:
    familiar = novelty is not None and novelty <= 1.0
    if blank:  # a flat colour is a photo of nothing, however close a model's embedding of it may fall
        return Verdict.not_a_mushroom
    if relevance is not None and 1.0 - relevance > irrelevant_above and not familiar:
        return Verdict.not_a_mushroom
    if novelty is not None and not familiar:
        return Verdict.unknown_species
    return Verdict.uncertain if top_probability < uncertain_below else Verdict.confident


MESSAGES = {Verdict.confident: CONFIDENT, Verdict.uncertain: UNCERTAIN, Verdict.unknown_species: UNKNOWN_SPECIES,
            Verdict.not_a_mushroom: NOT_A_MUSHROOM}


def build_answer(probabilities: np.ndarray, classes: list[ClassLabel], model_id: str, top_k: int,
                 uncertain_below: float, irrelevant_above: float, relevance: float | None = None,
                 novelty: float | None = None, gate_version: str | None = None, blank: bool = False) -> Prediction:
    by_index = {label.index: label for label in classes}
    order = np.argsort(-probabilities)[:top_k]
    verdict = decide(relevance, novelty, float(probabilities[order[0]]), uncertain_below, irrelevant_above, blank)
    named = verdict in (Verdict.confident, Verdict.uncertain)
    return Prediction(
        verdict=verdict, message=MESSAGES[verdict],
        predictions=[class_prediction(by_index[int(i)], float(probabilities[i])) for i in order] if named else [],
        genus=best_genus(probabilities, classes) if verdict is Verdict.uncertain else None,
        ood_score=None if novelty is None else round(novelty, 6),
        relevance_score=None if relevance is None else round(relevance, 6),
        gate_version=gate_version, model_id=model_id, elapsed_ms=0,
    )


@dataclass(frozen=True)
class PhotoReading:
    """What the model and the relevance gate read in one photo of an observation."""

    logits: np.ndarray  # uncalibrated (classes,)
    novelty: float | None = None
    relevance: float | None = None
    blank: bool = False
    gate_version: str | None = None
    filename: str | None = None


def observation_answer(readings: Sequence[PhotoReading], classes: list[ClassLabel], model_id: str, top_k: int,
                       uncertain_below: float, irrelevant_above: float, temperature: float) -> ObservationPrediction:
    """One answer for the photos of one observation, with each photo's own answer beside it."""
    photos: list[ObservationPhoto] = []
    kept: list[PhotoReading] = []
    for index, reading in enumerate(readings):
        answer = build_answer(openset.softmax(reading.logits, temperature), classes, model_id, top_k, uncertain_below,
                              irrelevant_above, reading.relevance, reading.novelty, reading.gate_version, reading.blank)
        combined = answer.verdict is not Verdict.not_a_mushroom
        if combined:
            kept.append(reading)
        photos.append(ObservationPhoto(index=index, filename=reading.filename, combined=combined, prediction=answer))
    if not kept:
        return ObservationPrediction(verdict=Verdict.not_a_mushroom, message=NO_MUSHROOM_PHOTO, predictions=[],
                                     combination=COMBINATION, photos_combined=0, photos=photos, model_id=model_id,
                                     elapsed_ms=0)
    logits = combine_logits(np.stack([reading.logits for reading in kept]))
    # The gate has already spoken per photo (relevance None here): the combined reading is of mushroom photos.
    combined_answer = build_answer(openset.softmax(logits, temperature), classes, model_id, top_k, uncertain_below,
                                   irrelevant_above, novelty=combine_novelty([reading.novelty for reading in kept]))
    return ObservationPrediction(
        verdict=combined_answer.verdict, message=combined_answer.message, predictions=combined_answer.predictions,
        genus=combined_answer.genus, ood_score=combined_answer.ood_score, combination=COMBINATION,
        photos_combined=len(kept), photos=photos, model_id=model_id, elapsed_ms=0,
    )
