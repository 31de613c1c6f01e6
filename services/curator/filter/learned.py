"""Stage 2 of the irrelevant-image filter: a logistic-regression head on a colour/texture feature vector.

Why not a CNN: on this data the stage-1 statistics already separate the classes, a fixed random-feature
conv net or an untrained MobileNetV3 (no ImageNet weights offline) adds TensorFlow start-up time and memory
to every curation worker for features that are not better than a colour histogram, and the head must
retrain in seconds on a few hundred human labels. So the embedding is hand-made and CPU-cheap: the 14
stage-1 statistics + a joint hue/saturation/value histogram (8x3x2) + a gradient-orientation histogram (8),
all from the same 64x64 thumbnail. Training uses human labels plus stage-1 confident cases; held-out
human labels give precision/recall.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.curator.filter.logistic import LogisticModel, fit_logistic, precision_recall
from services.curator.filter.stats import _hsv, thumbnail_features
from shared.storage import ObjectNotFound, ObjectStore

logger = logging.getLogger(__name__)

N_FEATURES = 14 + 48 + 8
CONFIDENT_LOW = 0.05
CONFIDENT_HIGH = 0.95


def learned_features(rgb: np.ndarray) -> np.ndarray:
    """The stage-2 embedding of a thumbnail (see stats.thumbnail)."""
    hue, sat, val = _hsv(rgb)
    joint = (np.minimum(hue * 8, 7).astype(np.int64) * 6 + np.minimum(sat * 3, 2).astype(np.int64) * 2
             + (val > 0.5).astype(np.int64))
    colour = np.bincount(joint.ravel(), minlength=48).astype(np.float32) / joint.size
    gray = rgb.mean(axis=2)
    gx = np.diff(gray, axis=1)[:-1, :]
    gy = np.diff(gray, axis=0)[:, :-1]
    magnitude = np.hypot(gx, gy)
    angle = (np.arctan2(gy, gx) % np.pi) / np.pi
    orientation = np.bincount(np.minimum(angle * 8, 7).astype(np.int64).ravel(), weights=magnitude.ravel(),
                              minlength=8).astype(np.float32)
    orientation /= max(float(orientation.sum()), 1e-6)
    return np.concatenate([thumbnail_features(rgb), colour, orientation]).astype(np.float32)


class FilterCard(BaseModel):
    """What GET /filter shows about the learned filter."""

    model_config = ConfigDict(extra="forbid")

    trained_at: datetime
    human_labels: int
    confident_cases: int
    train_size: int
    held_out: int
    threshold: float
    precision: float | None
    recall: float | None
    feature: str = "stage1 statistics + HSV histogram 8x3x2 + gradient orientation histogram 8"


def held_out(image_id: str, fraction: float = 0.25) -> bool:
    """Deterministic split of human labels by image_id."""
    return int(hashlib.sha256(image_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def train_learned(human_ids: list[str], human_x: np.ndarray, human_y: np.ndarray, pool_x: np.ndarray,
                  pool_stage1: np.ndarray, threshold: float = 0.5) -> tuple[LogisticModel, FilterCard]:
    """Fit on the human labels not held out plus stage-1 confident cases from ``pool``; evaluate on held-out labels."""
    test_mask = np.array([held_out(i) for i in human_ids], dtype=bool) if human_ids else np.zeros(0, bool)
    confident = (pool_stage1 < CONFIDENT_LOW) | (pool_stage1 > CONFIDENT_HIGH)
    x = np.concatenate([human_x[~test_mask], pool_x[confident]]) if len(pool_x) else human_x[~test_mask]
    y = np.concatenate([human_y[~test_mask], (pool_stage1[confident] > 0.5).astype(np.float64)])
    # A person's label is worth more than a confident guess of stage 1.
    weight = np.concatenate([np.full(int((~test_mask).sum()), 3.0), np.ones(int(confident.sum()))])
    if len(np.unique(y)) < 2:
        raise ValueError("need both relevant and irrelevant examples to train the filter")
    model = fit_logistic(x.reshape(len(y), N_FEATURES), y, l2=1e-2, sample_weight=weight)
    precision = recall = None
    if test_mask.any():
        precision, recall = precision_recall(model.predict(human_x[test_mask]), human_y[test_mask], threshold)
    card = FilterCard(trained_at=datetime.now(UTC), human_labels=len(human_ids), confident_cases=int(confident.sum()),
                      train_size=len(y), held_out=int(test_mask.sum()), threshold=threshold, precision=precision,
                      recall=recall)
    logger.info("trained learned filter on %d examples: precision %s recall %s", len(y), precision, recall)
    return model, card


FILTER_MODEL_KEY = "curation/filter/model.json"


def save_learned(store: ObjectStore, model: LogisticModel, card: FilterCard) -> None:
    store.put_json(FILTER_MODEL_KEY, {"model": model.to_json(), "card": card.model_dump(mode="json")})


def load_learned(store: ObjectStore) -> tuple[LogisticModel, FilterCard] | None:
    try:
        value = store.get_json(FILTER_MODEL_KEY)
    except ObjectNotFound:
        return None
    return LogisticModel.from_json(value["model"]), FilterCard.model_validate(value["card"])
