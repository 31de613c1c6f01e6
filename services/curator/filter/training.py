"""Retraining the learned filter from the stored labels and the dataset's analysis cache."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc

from services.curator.analysis import read_cache
from services.curator.filter.learned import FilterCard, save_learned, train_learned
from services.curator.labels import LabelStore
from shared.storage import ObjectStore


class NotEnoughLabels(ValueError):
    """Nothing (or only one class) to learn from."""


def retrain(store: ObjectStore, dataset: str, threshold: float = 0.5) -> FilterCard:
    """Train on human labels of images the dataset's curations have analysed, plus stage-1 confident cases."""
    cache = read_cache(store, dataset, columns=["image_id", "broken", "stage1", "features"])
    cache = cache.filter(pc.invert(pc.fill_null(cache.column("broken"), True)))
    if cache.num_rows == 0:
        raise NotEnoughLabels("no analysed images in this dataset yet: run a curation first")
    labels = LabelStore(store).table()
    position = pc.index_in(labels.column("image_id"), value_set=cache.column("image_id"))
    known = pc.is_valid(position)
    labelled = labels.filter(known)
    features = np.stack(cache.column("features").to_numpy(zero_copy_only=False)).astype(np.float32)
    rows = pc.drop_null(pc.filter(position, known)).to_numpy(zero_copy_only=False).astype(np.int64)
    human_x = features[rows] if len(rows) else np.zeros((0, features.shape[1]), np.float32)
    human_y = np.asarray(labelled.column("human_irrelevant").to_numpy(zero_copy_only=False), dtype=np.float64)
    unlabelled = np.ones(cache.num_rows, dtype=bool)
    unlabelled[rows] = False
    stage1 = np.asarray(cache.column("stage1").to_numpy(zero_copy_only=False), dtype=np.float64)
    try:
        model, card = train_learned(labelled.column("image_id").to_pylist(), human_x, human_y,
                                    features[unlabelled], stage1[unlabelled], threshold)
    except ValueError as exc:
        raise NotEnoughLabels(str(exc)) from exc
    save_learned(store, model, card)
    return card


