"""One answer per observation: the photos of one mushroom combined, as DF20 does (Picek et al., WACV 2022).

The trainer's evaluation and ``POST /predict/observation`` both combine here, so the figure a model card reports
is the rule the service applies.

- Class scores: the mean of the photos' logits. Averaging log-probabilities instead gives the same answer:
  ``log softmax(z / T) = z / T - logsumexp(z / T)`` differs from the scaled logits by one constant per photo,
  which the softmax of the mean removes, so ``softmax(mean(log p)) == softmax(mean(z) / T)`` for any
  temperature. Averaging probabilities is a different rule (one sharp photo counts less); DF20 averages scores
  before the softmax, and the mean of logits is a product of the photos' likelihoods, which is what several
  independent looks at one organism are.
- Novelty: the mean of the photos' novelty ratios (score over the fitted threshold; over 1 is unknown), the
  same averaging of evidence as the logits: one odd photo of a known species does not by itself make the
  observation "unknown". The threshold was fitted on single photos, so the evaluation reports the share of
  observations this rule keeps (``obs_novelty_retained``) rather than assuming it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

COMBINATION = "mean_logits"


def combine_logits(logits: np.ndarray) -> np.ndarray:
    """The observation's logits (classes,) from its photos' logits (photos, classes)."""
    if logits.ndim != 2 or not len(logits):
        raise ValueError("combine_logits needs a (photos, classes) array with at least one photo")
    combined: np.ndarray = np.asarray(logits, dtype=np.float64).mean(axis=0)
    return combined


def combine_novelty(ratios: Sequence[float | None]) -> float | None:
    """The observation's novelty ratio: the mean of its photos' (None when the model has no open-set bank)."""
    known = [ratio for ratio in ratios if ratio is not None]
    return float(np.mean(known)) if known and len(known) == len(ratios) else None


def group_rows(observation_ids: Sequence[str], labels: np.ndarray) -> list[np.ndarray]:
    """Row indices of each observation, in order of first appearance.

    An observation is keyed by (observation_id, label): a manifest may give one id to photos of two classes
    (a CSV whose observation ids are wrong), and averaging across classes would judge neither.
    """
    if len(observation_ids) != len(labels):
        raise ValueError(f"{len(observation_ids)} observation ids for {len(labels)} rows")
    groups: dict[tuple[str, int], list[int]] = {}
    for row, key in enumerate(zip(observation_ids, labels.tolist(), strict=True)):
        groups.setdefault(key, []).append(row)
    return [np.array(rows, dtype=np.int64) for rows in groups.values()]


def combine_by_observation(logits: np.ndarray, observation_ids: Sequence[str], labels: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(combined logits (observations, classes), their labels, the rows of each) of a split's predictions."""
    groups = group_rows(observation_ids, labels)
    combined = np.stack([combine_logits(logits[rows]) for rows in groups]) if groups else np.zeros(
        (0, logits.shape[1] if logits.ndim == 2 else 0))
    return combined, np.array([labels[rows[0]] for rows in groups], dtype=np.int64), groups
