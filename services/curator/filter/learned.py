"""The curator's side of the shared relevance gate (:mod:`shared.relevance.gate`): which gate judges, the
probe fitted on human labels, and scores of cached readings.

- The worker loads the pretrained model once per process (:func:`pretrained_gate`) and puts the stored probe
  in force (:func:`gate_in_force`), the same probe that /predict re-reads from ``curation/relevance/probe.json``.
- Retraining (:func:`fit_probe`) reads no image: the analysis cache holds every photo's embedding, statistics
  and fungus probability. Only human labels train it (never the gate's own confident answers: self-training
  would only reinforce what the gate already says), and held-out human labels (:func:`held_out`) measure both
  the probe and the zero-shot gate it corrects.
- The API process scores cached readings without TensorFlow (:func:`irrelevant_scores`), by the gate's own
  formula (:func:`shared.relevance.gate.relevance_of`).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from services.curator.analysis import reading_of
from services.curator.columnar import map_row_groups
from shared.cpus import available_cpus
from shared.relevance.gate import PROBE_FEATURES, GateReading, RelevanceGate, load_gate, relevance_of
from shared.relevance.probe import RelevanceProbe, fit_offset_logistic, precision_recall
from shared.relevance.store import load_probe
from shared.storage import ObjectStore

logger = logging.getLogger(__name__)

PROBE_L2 = 1e-2  # on standardised features with class-balanced weights summing to one


@lru_cache(maxsize=2)
def pretrained_gate(source: str, work_dir: str, prior_log_odds: float) -> RelevanceGate:
    """The gate without a probe, loaded once per worker process (converting the weights takes seconds). It reads
    in the worker's own thread while a pool decodes the next images, so it may use every CPU the worker has."""
    return load_gate(source, work_dir, prior_log_odds, threads=available_cpus())


def gate_in_force(store: ObjectStore, gate: RelevanceGate) -> RelevanceGate:
    """``gate`` with the stored probe (refused by the gate if fitted on other pretrained embeddings)."""
    return gate.with_probe(load_probe(store))


def irrelevant_scores(reading: GateReading, probe: RelevanceProbe | None, prior_log_odds: float) -> np.ndarray:
    """The gate's irrelevant score of cached readings, without loading the model (shared formula)."""
    return np.asarray(1.0 - relevance_of(reading, probe, prior_log_odds), dtype=np.float64)


CACHE_SCORE_COLUMNS = ["id_key", "broken", "gate", "fungus_probability", "blank", "stats", "embedding"]


def cache_irrelevant_scores(source: pa.Table | Path, probe: RelevanceProbe | None,
                            prior_log_odds: float) -> pa.Table:
    """``id_key``, ``irrelevant_score`` per analysed image of an analysis cache (a table or a Parquet file),
    streamed by row group. The probe applies to rows read by the model it was fitted on; others are zero-shot."""
    def one(batch: pa.RecordBatch) -> pa.Table:
        table = pa.Table.from_batches([batch])
        table = table.filter(pc.and_(pc.invert(pc.fill_null(table.column("broken"), True)),
                                     pc.is_valid(table.column("fungus_probability"))))
        reading = reading_of(table)
        scores = irrelevant_scores(reading, None, prior_log_odds)
        if probe is not None and table.num_rows:
            same = np.asarray(pc.fill_null(pc.equal(table.column("gate"), probe.pretrained), False)
                              .to_numpy(zero_copy_only=False), dtype=bool)
            if same.any():
                scores[same] = irrelevant_scores(reading, probe, prior_log_odds)[same]
        return pa.table({"id_key": table.column("id_key"), "irrelevant_score": pa.array(scores, pa.float64())})

    # A zero-shot score reads the fungus probability alone: the embeddings (2.5 kB a row) only for a probe.
    columns = CACHE_SCORE_COLUMNS if probe is not None else [c for c in CACHE_SCORE_COLUMNS
                                                             if c not in ("stats", "embedding")]
    parts = [part for part in map_row_groups(source, columns, one) if part.num_rows]
    if not parts:
        return pa.table({"id_key": pa.array([], pa.uint64()), "irrelevant_score": pa.array([], pa.float64())})
    return pa.concat_tables(parts)


def held_out(image_id: str, fraction: float = 0.25) -> bool:
    """Deterministic split of human labels by image_id."""
    return int(hashlib.sha256(image_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def fit_probe(image_ids: list[str], reading: GateReading, irrelevant: np.ndarray, pretrained: str,
              prior_log_odds: float, threshold: float = 0.5, l2: float = PROBE_L2) -> RelevanceProbe:
    """Fit the probe on the human labels not held out; measure it and the zero-shot gate on the held-out ones.

    ``irrelevant``: 1 where a person said "not a field photo of a fungus". The probe predicts that class, so its
    fixed offset is minus the gate's log-odds of relevance: ``P(irrelevant) = sigmoid(-(zero_shot + prior) +
    probe)``, and the gate's ``relevance = sigmoid(zero_shot + prior - probe)`` is one minus it.
    """
    labels = np.asarray(irrelevant, dtype=np.float64)
    test = np.array([held_out(i) for i in image_ids], dtype=bool)
    train = ~test
    if len(np.unique(labels[train])) < 2:
        raise ValueError("the labels not held out for evaluation are all of one class: label more images")
    features = reading.probe_features()
    offset = -(reading.zero_shot_log_odds + prior_log_odds)
    mean, scale, weights, bias = fit_offset_logistic(features[train], labels[train], offset[train], l2)
    probe = RelevanceProbe(
        features=PROBE_FEATURES, mean=mean.tolist(), scale=scale.tolist(), weights=weights.tolist(), bias=bias,
        l2=l2, trained_at=datetime.now(UTC), pretrained=pretrained, human_labels=len(image_ids),
        irrelevant_labels=int(labels.sum()), held_out=int(test.sum()))
    if test.any():
        part = GateReading(*(getattr(reading, name)[test] for name in
                             ("fungus_probability", "embedding", "top_class", "stats", "blank")))
        probe.held_out_precision, probe.held_out_recall = precision_recall(
            irrelevant_scores(part, probe, prior_log_odds), labels[test], threshold)
        probe.held_out_zero_shot_precision, probe.held_out_zero_shot_recall = precision_recall(
            irrelevant_scores(part, None, prior_log_odds), labels[test], threshold)
    logger.info("fitted relevance probe %s on %d labels (%d held out): precision %s recall %s, zero-shot %s %s",
                probe.version, int(train.sum()), int(test.sum()), probe.held_out_precision, probe.held_out_recall,
                probe.held_out_zero_shot_precision, probe.held_out_zero_shot_recall)
    return probe


class FilterStatus(BaseModel):
    """What GET /filter shows: the gate that judges curations (and /predict) and the probe in force."""

    gate: str = Field(description="pretrained model + probe version, or the configured source + zero-shot")
    mode: str = Field(description="'probe' (zero-shot corrected by human labels) or 'zero-shot'")
    prior_log_odds: float
    probe: RelevanceProbe | None = None
