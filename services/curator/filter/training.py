"""Retraining the relevance probe from the stored human labels and the dataset's analysis cache."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow.compute as pc

from services.curator.analysis import read_cache, reading_of
from services.curator.filter.learned import PROBE_L2, fit_probe
from services.curator.labels import LabelStore
from shared.relevance.probe import MIN_LABELS_PER_CLASS, RelevanceProbe
from shared.relevance.store import save_probe
from shared.storage import ObjectStore

NO_ANALYSES = "no analysed images in this dataset yet: run a curation first"


class NotEnoughLabels(ValueError):
    """Nothing (or too little of one class) to learn from."""


def retrain(store: ObjectStore, dataset: str, prior_log_odds: float, threshold: float = 0.5,
            l2: float = PROBE_L2) -> RelevanceProbe:
    """Fit the probe on human labels of images the dataset's curations have analysed, store it, return it."""
    cache = read_cache(store, dataset, columns=["image_id", "broken", "gate", "fungus_probability", "blank",
                                                "stats", "embedding"])
    # Blank images are never relevant whatever the probe says: they teach it nothing.
    cache = cache.filter(pc.and_(pc.and_(pc.invert(pc.fill_null(cache.column("broken"), True)),
                                         pc.is_valid(cache.column("fungus_probability"))),
                                 pc.invert(pc.fill_null(cache.column("blank"), False))))
    if cache.num_rows == 0:
        raise NotEnoughLabels(NO_ANALYSES)
    # One probe reads one model's embeddings: the model that analysed most of the dataset.
    pretrained, _ = Counter(cache.column("gate").to_pylist()).most_common(1)[0]
    cache = cache.filter(pc.equal(cache.column("gate"), pretrained))
    labels = LabelStore(store).table()
    position = pc.index_in(labels.column("image_id"), value_set=cache.column("image_id"))
    known = pc.is_valid(position)
    labelled = labels.filter(known)
    rows = pc.drop_null(pc.filter(position, known)).to_numpy(zero_copy_only=False).astype(np.int64)
    irrelevant = np.asarray(labelled.column("human_irrelevant").to_numpy(zero_copy_only=False), dtype=np.float64)
    counts = {"irrelevant": int(irrelevant.sum()), "relevant": int(len(irrelevant) - irrelevant.sum())}
    if min(counts.values()) < MIN_LABELS_PER_CLASS:
        raise NotEnoughLabels(
            f"need at least {MIN_LABELS_PER_CLASS} human labels of each class among this dataset's analysed "
            f"images, have {counts['relevant']} relevant and {counts['irrelevant']} irrelevant")
    reading = reading_of(cache.take(rows))
    try:
        probe = fit_probe(labelled.column("image_id").to_pylist(), reading, irrelevant, pretrained, prior_log_odds,
                          threshold, l2)
    except ValueError as exc:
        raise NotEnoughLabels(str(exc)) from exc
    save_probe(store, probe)
    return probe
