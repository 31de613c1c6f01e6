"""Open-set judgements for a trained classifier: does it know this image's kind, and how sure may it be?

A classifier answers "species X" for a cat unless something knows what it has not seen (DESIGN.md, lesson 8).
The training job fits, on its own splits, everything here; the inference service applies it:

- **kNN out-of-distribution score** (Sun et al., ICML 2022, "Out-of-distribution detection with deep nearest
  neighbors"): the distance from an image's L2-normalised penultimate embedding (layer ``pool``) to its k-th
  nearest neighbour in a bank of training embeddings. No class or density assumption, and on OpenOOD it beats
  the baselines below on near- and far-OOD sets; they are kept for comparison (OpenOOD always reports the
  max-softmax baseline): Mahalanobis (Lee et al., 2018), max softmax probability (MSP), energy (Liu et al.,
  2020). Every score follows one convention: **higher = more out-of-distribution**.
- **Temperature scaling** (Guo et al., 2017): one scalar T fitted on validation logits; softmax(logits / T)
  keeps the ranking (top-1 unchanged) and makes the confidence mean what it says. ECE and reliability bins
  measure it.
- **Thresholds** fitted on validation only: the kNN distance under which a share (0.95) of in-distribution
  images fall, and the calibrated confidence under which an answer is "uncertain" (falls back to the genus).

Imports numpy and pydantic only; scipy (temperature fit), Keras (embedding model) and matplotlib (plot) are
imported inside the one function that needs each, so the inference service can score without them.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

EMBEDDING_LAYER = "pool"  # the penultimate embedding's layer name: part of the model contract
TEMPERATURE_BOUNDS = (0.05, 20.0)
_CHUNK_ELEMENTS = 1 << 24  # query rows x bank rows per distance block (64 MB of float32)


# --- features and probabilities ---------------------------------------------------------------------------

def embedding_model(model: keras.Model) -> keras.Model:
    """A model with ``model``'s input that returns ``[features, output]``: one forward pass gives both the
    embedding (layer ``pool``) and the logits (probabilities for an old model; the caller knows which)."""
    import keras

    return keras.Model(model.inputs, [model.get_layer(EMBEDDING_LAYER).output, model.output],
                       name=f"{model.name}_embedding")


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); all-zero rows stay zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    normalised: np.ndarray = x / np.maximum(norms, 1e-12)
    return normalised


def _log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = scaled - scaled.max(axis=-1, keepdims=True)
    log_probabilities: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return log_probabilities


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax(logits / T), stable for large logits."""
    probabilities: np.ndarray = np.exp(_log_softmax(logits, temperature))
    return probabilities


def _logsumexp(x: np.ndarray) -> np.ndarray:
    peak = x.max(axis=-1)
    return np.asarray(peak + np.log(np.exp(x - peak[..., None]).sum(axis=-1)))


# --- out-of-distribution scores (higher = more out-of-distribution) ---------------------------------------

def _stratified_rows(n: int, size: int, labels: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """``size`` of ``n`` row indices, each class keeping its share (largest remainders get the spare rows)."""
    if labels is None:
        return np.sort(rng.choice(n, size=size, replace=False))
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / n
    quota = np.floor(exact).astype(int)
    spare = size - int(quota.sum())
    quota[np.argsort(-(exact - quota), kind="stable")[:spare]] += 1
    chosen = [rng.choice(np.flatnonzero(labels == cls), size=int(q), replace=False)
              for cls, q in zip(classes, quota, strict=True) if q]
    return np.sort(np.concatenate(chosen))


class KnnScorer:
    """Deep nearest neighbours: the k-th nearest training embedding's distance (Sun et al., 2022).

    ``bank`` holds L2-normalised training features (float32), at most ``bank_size`` rows; the paper finds a
    random subsample of the training set (even 1%) loses little, and it bounds memory and time per query.
    """

    def __init__(self, bank: np.ndarray, k: int) -> None:
        bank = np.asarray(bank, dtype=np.float32)
        if bank.ndim != 2 or not len(bank):
            raise ValueError("the bank needs at least one feature row")
        if not 1 <= k <= len(bank):
            raise ValueError(f"k={k} must be between 1 and the bank's {len(bank)} rows")
        self.bank = bank
        self.k = int(k)

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray | None = None, k: int = 50, bank_size: int = 10_000,
            seed: int = 0) -> KnnScorer:
        """A bank from training features (normalised here), subsampled by class with a seeded generator.

        k is capped at half the smallest class's rows in the bank (with labels; else half the bank): the k-th
        neighbour of a photo of a known class should still be of its class, which a k near the bank's size (a
        tiny model's few photos) would make impossible. At least 1, so a tiny test model still gets a scorer.
        """
        features = np.asarray(features, dtype=np.float32)
        n = len(features)
        kept_labels = None if labels is None else np.asarray(labels)
        if n > bank_size:
            rows = _stratified_rows(n, bank_size, kept_labels, np.random.default_rng(seed))
            features = features[rows]
            kept_labels = None if kept_labels is None else kept_labels[rows]
        bank = l2_normalise(features)
        smallest = len(bank)
        if kept_labels is not None and len(kept_labels):
            counts = np.bincount(kept_labels.astype(np.int64))
            smallest = int(counts[counts > 0].min())
        return cls(bank, max(1, min(k, smallest // 2, len(bank) - 1)))

    @property
    def feature_dim(self) -> int:
        return int(self.bank.shape[1])

    def score(self, features: np.ndarray) -> np.ndarray:
        """k-th nearest-neighbour Euclidean distance of each row (normalised first), in [0, 2]."""
        queries = l2_normalise(np.atleast_2d(features))
        if queries.shape[1] != self.feature_dim:
            raise ValueError(f"features have {queries.shape[1]} dimensions; the bank has {self.feature_dim}")
        scores = np.empty(len(queries), dtype=np.float32)
        step = max(1, _CHUNK_ELEMENTS // len(self.bank))
        for start in range(0, len(queries), step):
            block = queries[start:start + step]
            # unit vectors: |q - b|^2 = 2 - 2 q.b, a matrix product instead of pairwise differences
            squared = 2.0 - 2.0 * (block @ self.bank.T)
            kth = np.partition(squared, self.k - 1, axis=1)[:, self.k - 1]
            scores[start:start + step] = np.sqrt(np.clip(kth, 0.0, None))
        return scores

    def save(self, path: Path) -> None:
        """One ``.npz`` (``bank``, ``k``): the fitted object is the artefact (``models/<id>/openset.npz``)."""
        with open(path, "wb") as file:
            np.savez(file, method=np.array("knn"), bank=self.bank, k=np.array(self.k))

    @classmethod
    def load(cls, path: Path) -> KnnScorer:
        with np.load(path, allow_pickle=False) as data:
            return cls(data["bank"], int(data["k"]))


class MahalanobisScorer:
    """Class-conditional Mahalanobis distance with one shared covariance (Lee et al., NeurIPS 2018): the squared
    distance of an embedding to its nearest class mean, under the training embeddings' covariance.

    Unlike kNN it keeps the embedding's norm and the spread of each direction, which matters for the small
    models and drawn images of our tests and demo: there kNN on L2-normalised features found real photos and
    noise *closer* to the training photos than held-out training-like photos (bench/results/openset.md).
    """

    def __init__(self, means: np.ndarray, precision: np.ndarray) -> None:
        self.means = np.asarray(means, dtype=np.float32)
        self.precision = np.asarray(precision, dtype=np.float32)
        if self.means.ndim != 2 or self.precision.shape != (self.means.shape[1],) * 2:
            raise ValueError("means must be (classes, d) and precision (d, d)")

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray) -> MahalanobisScorer:
        return cls(*mahalanobis_fit(features, labels))

    @property
    def feature_dim(self) -> int:
        return int(self.means.shape[1])

    def score(self, features: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(features, dtype=np.float32))
        if x.shape[1] != self.feature_dim:
            raise ValueError(f"features have {x.shape[1]} dimensions; the scorer has {self.feature_dim}")
        return np.asarray(mahalanobis_score(x, self.means, self.precision), dtype=np.float32)

    def save(self, path: Path) -> None:
        with open(path, "wb") as file:
            np.savez(file, method=np.array("mahalanobis"), means=self.means, precision=self.precision)


NoveltyScorer = KnnScorer | MahalanobisScorer


def load_scorer(path: Path) -> NoveltyScorer:
    """The scorer saved in ``openset.npz`` (its ``method`` says which; files without one are kNN banks)."""
    with np.load(path, allow_pickle=False) as data:
        method = str(data["method"]) if "method" in data else "knn"
        if method == "mahalanobis":
            return MahalanobisScorer(data["means"], data["precision"])
        if method == "knn":
            return KnnScorer(data["bank"], int(data["k"]))
    raise ValueError(f"{path.name}: unknown open-set method {method!r}")


def mahalanobis_fit(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class means and the precision of one covariance shared by all classes (Lee et al., 2018).

    The pseudo-inverse keeps it defined when there are fewer images than feature dimensions.
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    means = np.stack([features[labels == cls].mean(axis=0) for cls in classes])
    centred = features - means[np.searchsorted(classes, labels)]
    covariance = centred.T @ centred / len(features)
    return means, np.linalg.pinv(covariance, hermitian=True)


def mahalanobis_score(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance to the nearest class mean."""
    x = np.asarray(features, dtype=np.float64)
    projected = x @ precision
    # (x - m) P (x - m) = xPx - 2 xPm + mPm for every class at once
    distances = ((projected * x).sum(axis=1)[:, None] - 2.0 * projected @ means.T
                 + ((means @ precision) * means).sum(axis=1)[None, :])
    return np.asarray(distances.min(axis=1))


def msp_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Minus the maximum softmax probability (Hendrycks & Gimpel, 2017): the baseline."""
    return np.asarray(-softmax(logits, temperature).max(axis=1))


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The free energy -T logsumexp(logits / T) (Liu et al., 2020): low for images like the training data."""
    return np.asarray(-temperature * _logsumexp(np.asarray(logits, dtype=np.float64) / temperature))


# --- calibration -------------------------------------------------------------------------------------------

def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    log_probs = _log_softmax(logits, temperature)
    return float(-log_probs[np.arange(len(labels)), np.asarray(labels)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises validation NLL of softmax(logits / T) (Guo et al., 2017).

    Searched over log T: NLL is smooth and unimodal there, and T > 0 by construction.
    """
    from scipy.optimize import minimize_scalar

    low, high = (math.log(bound) for bound in TEMPERATURE_BOUNDS)
    result = minimize_scalar(lambda log_t: negative_log_likelihood(logits, labels, math.exp(log_t)),
                             bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(math.exp(result.x))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[dict[str, Any]]:
    """Equal-width confidence bins: mean confidence, accuracy and count of the top-1 answers in each
    (``confidence``/``accuracy`` are None for an empty bin)."""
    probs = np.asarray(probs)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # right-closed bins (lower, upper]; a confidence of exactly 0 goes to the first
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        rows.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": count,
                     "confidence": float(confidence[members].mean()) if count else None,
                     "accuracy": float(correct[members].mean()) if count else None})
    return rows


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Count-weighted mean |accuracy - confidence| over the reliability bins."""
    return ece_of_bins(reliability_bins(probs, labels, bins))


def ece_of_bins(rows: list[dict[str, Any]]) -> float:
    total = sum(row["count"] for row in rows)
    gaps = sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in rows if row["count"])
    return float(gaps / total) if total else 0.0


# --- thresholds and figures ----------------------------------------------------------------------------

def threshold_at_retention(id_scores: np.ndarray, retention: float = 0.95) -> float:
    """The score at or under which at least ``retention`` of the in-distribution scores fall."""
    scores = np.asarray(id_scores, dtype=np.float64)
    if not len(scores):
        raise ValueError("no in-distribution scores to place a threshold on")
    return float(np.quantile(scores, retention, method="higher"))


def fit_uncertain_below(calibrated_max_probs: np.ndarray, correct: np.ndarray, precision: float = 0.9,
                        min_answers: int = 5) -> float:
    """The smallest confidence t such that validation answers with confidence >= t are right at least
    ``precision`` of the time, counting at least ``min_answers`` (fewer cannot vouch for a precision);
    1.0 (everything is uncertain) when no t reaches it."""
    confidence = np.asarray(calibrated_max_probs, dtype=np.float64)
    right = np.asarray(correct, dtype=bool)
    order = np.argsort(-confidence, kind="stable")
    confidence, right = confidence[order], right[order]
    answered = np.arange(1, len(confidence) + 1)
    precisions = np.cumsum(right) / answered
    # a threshold t = confidence[i] answers every row up to the last one with the same confidence
    last_of_value = np.r_[confidence[1:] != confidence[:-1], True] if len(confidence) else np.array([], bool)
    ok = last_of_value & (precisions >= precision) & (answered >= min_answers)
    if not ok.any():
        return 1.0
    return float(confidence[np.flatnonzero(ok)[-1]])


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (as the Mann-Whitney U statistic needs)."""
    unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts
    return np.asarray((first + (counts + 1) / 2.0)[inverse])


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under the ROC curve with ID as positive: P(an OOD score > an ID score), ties counting half."""
    id_scores, ood_scores = np.asarray(id_scores, np.float64), np.asarray(ood_scores, np.float64)
    if not len(id_scores) or not len(ood_scores):
        raise ValueError("AUROC needs in- and out-of-distribution scores")
    ranks = _average_ranks(np.concatenate([id_scores, ood_scores]))
    n_ood = len(ood_scores)
    u = ranks[len(id_scores):].sum() - n_ood * (n_ood + 1) / 2.0
    return float(u / (len(id_scores) * n_ood))


def fpr_at_95_tpr(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Share of OOD images accepted when the threshold keeps 95% of ID images (OpenOOD's FPR@95)."""
    threshold = threshold_at_retention(id_scores, 0.95)
    return float((np.asarray(ood_scores) <= threshold).mean())


# --- what the model card stores -------------------------------------------------------------------------

class OpenSetCard(BaseModel):
    """What the training job fitted for open-set answers, on what, and how it measured (``ModelCard.openset``).

    Everything here is fitted on the training bank and the validation split; the test split is only reported
    (``ModelCard.metrics``). Real out-of-distribution figures (AUROC, FPR@95 on near/far OOD photos) come from
    the benchmark, which has OOD photos; training has none.
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["knn", "mahalanobis"] = Field(
        default="knn", description="the novelty score in openset.npz: kNN distance or class-conditional Mahalanobis")
    k: int | None = Field(default=None, ge=1, description="kNN: the k-th nearest neighbour's distance is the score")
    bank_size: int | None = Field(default=None, ge=1, description="kNN: training embeddings in openset.npz")
    feature_dim: int = Field(ge=1, description="width of the penultimate embedding (layer 'pool')")
    threshold: float = Field(description="novelty score above which an image is out-of-distribution")
    id_retention: float = Field(gt=0, le=1, description="share of validation images the threshold was set to keep")
    id_validation_retained: float = Field(ge=0, le=1, description="measured share of validation under threshold")
    temperature: float = Field(gt=0, description="softmax(logits / temperature) gives calibrated probabilities")
    uncertain_below: float = Field(
        ge=0, le=1, description="calibrated top-1 probability under which an answer is uncertain (genus fallback)")
    precision_target: float = Field(gt=0, le=1, description="validation precision of answers at >= uncertain_below")
    ece_before: float = Field(ge=0, description="validation ECE of softmax(logits)")
    ece_after: float = Field(ge=0, description="validation ECE of softmax(logits / temperature)")
    validation_images: int = Field(ge=0)
    fitted_on: str = Field(description="e.g. 'validation split of fungi v3 (bank: train split)'")
    fitted_at: datetime
    comparison: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="per OOD method (knn, mahalanobis, msp, energy): threshold at id_retention, validation share "
                    "retained and, when validation has errors, error_auroc (separating wrong from right answers)")
