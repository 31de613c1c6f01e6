"""Turning a probability vector into an answer: top-k, uncertain -> genus, not a mushroom at all."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from services.inference.schemas import ClassPrediction, GroupPrediction, Prediction, Verdict
from shared.registry import ClassLabel

CONFIDENT = "the model is confident about the species"
UNCERTAIN = "uncertain: no species is likely enough; the genus below is what the probabilities support"
NOT_A_MUSHROOM = "this does not look like a field photo of a mushroom, so the model does not guess"


def ood_score(probabilities: np.ndarray) -> float:
    """Normalised entropy: 0 when one class takes everything, 1 when the model spreads evenly (no idea)."""
    n = len(probabilities)
    if n < 2:
        return 0.0
    p = np.clip(probabilities.astype(np.float64), 1e-12, 1.0)
    return float(-(p * np.log(p)).sum() / math.log(n))


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


def build_answer(probabilities: np.ndarray, classes: list[ClassLabel], model_id: str, top_k: int,
                 uncertain_below: float, ood_above: float, irrelevant: float | None,
                 irrelevant_above: float) -> Prediction:
    ood = ood_score(probabilities)
    by_index = {label.index: label for label in classes}
    # "Not a mushroom" is the curator filter's call when it runs: a spread-out answer from a weak or
    # few-class model means "uncertain", not "this is an envelope". Entropy decides alone only without it.
    not_a_photo = irrelevant > irrelevant_above if irrelevant is not None else ood > ood_above
    if not_a_photo:
        return Prediction(verdict=Verdict.not_a_mushroom, message=NOT_A_MUSHROOM, predictions=[],
                          ood_score=round(ood, 6), irrelevant_score=irrelevant, model_id=model_id, elapsed_ms=0)
    order = np.argsort(-probabilities)[:top_k]
    top = [class_prediction(by_index[int(i)], float(probabilities[i])) for i in order]
    uncertain = float(probabilities[order[0]]) < uncertain_below or ood > ood_above
    return Prediction(
        verdict=Verdict.uncertain if uncertain else Verdict.confident,
        message=UNCERTAIN if uncertain else CONFIDENT,
        predictions=top,
        genus=best_genus(probabilities, classes) if uncertain else None,
        ood_score=round(ood, 6), irrelevant_score=irrelevant, model_id=model_id, elapsed_ms=0,
    )
