"""Per-domain scores of one manifest version, computed column-wise (pyarrow + numpy, no row loops).

For each domain: its images and share of the dataset, harvest failures, human labels, the automatic
filter's irrelevant share with a Wilson interval, duplicates, and a keep / review / blacklist
recommendation from :class:`DomainRules`.
"""

from __future__ import annotations

import tempfile
from enum import StrEnum
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from services.curator.analysis import cache_key, is_current_cache
from services.curator.blacklist import BlacklistStore
from services.curator.columnar import KeyIndex, first_occurrence_duplicates, map_row_groups, string_keys
from services.curator.filter.learned import cache_irrelevant_scores
from services.curator.labels import LabelStore
from shared.curation import Blacklist
from shared.manifests import ManifestStore
from shared.relevance.store import load_probe
from shared.schemas import HarvestStatus
from shared.storage import ObjectNotFound, ObjectStore

SCORE_COLUMNS = ["image_id", "domain", "status", "sha256", "irrelevant_score", "duplicate_of"]


class Recommendation(StrEnum):
    keep = "keep"
    review = "review"
    blacklist = "blacklist"


class DomainRules(BaseModel):
    """When a domain is recommended for the blacklist or for a person's review."""

    model_config = ConfigDict(extra="forbid")

    min_scored: int = Field(default=20, ge=1, description="evaluated images needed before recommending blacklist")
    blacklist_lower: float = Field(default=0.5, ge=0, le=1, description="blacklist if Wilson lower bound exceeds")
    review_upper: float = Field(default=0.2, ge=0, le=1, description="review if Wilson upper bound exceeds")
    irrelevant_threshold: float = Field(default=0.5, ge=0, le=1, description="filter score counted as irrelevant")
    wilson_z: float = Field(default=1.96, gt=0)


class DomainScore(BaseModel):
    domain: str
    images: int
    share: float = Field(description="share of the dataset's rows")
    harvested: int
    failed: int
    failure_rate: float | None = Field(description="failed / (harvested + failed)")
    human_relevant: int
    human_irrelevant: int
    filter_scored: int = Field(description="harvested images the automatic filter scored")
    filter_irrelevant: int = Field(description="of those, scored above the threshold (the filter alone)")
    filter_irrelevant_share: float | None
    filter_wilson_low: float | None = Field(description="Wilson interval of the filter's share alone")
    filter_wilson_high: float | None
    scored: int = Field(description="images with a filter score or a human label")
    irrelevant: int = Field(description="of those, irrelevant (a human label overrides the filter)")
    irrelevant_share: float | None
    wilson_low: float | None = Field(description="95% Wilson interval of irrelevant_share (z configurable)")
    wilson_high: float | None
    duplicates: int
    blacklisted: str | None = Field(description="the blacklist entry that covers the whole domain, if any")
    recommendation: Recommendation
    why: str


def wilson_interval(k: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of k successes in n trials (NaN where n == 0)."""
    k = k.astype(np.float64)
    n = n.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def exact_duplicates(sha256: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """True for every row whose sha256 appeared on an earlier row (nulls are never duplicates)."""
    return first_occurrence_duplicates(*string_keys(sha256))


def _bool(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def compact_manifest(source: pa.Table | Path) -> pa.Table:
    """The few columns domain scores need, with ids and digests as 64-bit keys; streamed batch by batch
    so that the long id and digest strings of a multi-million-row manifest are never all in memory."""
    def compact(batch: pa.RecordBatch) -> pa.RecordBatch:
        status = batch.column("status")
        id_key, _ = string_keys(batch.column("image_id"))
        sha_key, sha_valid = string_keys(batch.column("sha256"))
        return pa.record_batch({
            "domain": batch.column("domain").cast(pa.string()),
            "harvested": pc.fill_null(pc.equal(status, HarvestStatus.ok.value), False),
            "failed": pc.fill_null(pc.equal(status, HarvestStatus.failed.value), False),
            "id_key": pa.array(id_key), "sha_key": pa.array(sha_key), "sha_valid": pa.array(sha_valid),
            "score": batch.column("irrelevant_score").cast(pa.float32()),
            "has_duplicate_of": pc.is_valid(batch.column("duplicate_of")),
        })

    parts = [part for part in map_row_groups(source, SCORE_COLUMNS, compact) if part.num_rows]
    if not parts:
        return pa.table({"domain": pa.array([], pa.string())})
    return pa.Table.from_batches(parts)


def keyed_values(source: pa.Table | Path, value_column: str) -> tuple[KeyIndex, np.ndarray]:
    """A lookup from image_id (as keys) to ``value_column`` (float64, NaN for nulls). Uses a stored ``id_key``
    column when the source has one (the analysis cache), else hashes ``image_id``."""
    names = source.column_names if isinstance(source, pa.Table) else pq.read_schema(source).names
    stored = "id_key" in names

    def one(batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        key = batch.column("id_key").to_numpy(zero_copy_only=False) if stored else \
            string_keys(batch.column("image_id"))[0]
        values = batch.column(value_column).cast(pa.float64()).to_numpy(zero_copy_only=False)
        return np.asarray(key, dtype=np.uint64), np.asarray(values, dtype=np.float64)

    parts = map_row_groups(source, ["id_key" if stored else "image_id", value_column], one)
    if not parts:
        return KeyIndex(np.zeros(0, np.uint64)), np.zeros(0)
    return KeyIndex(np.concatenate([p[0] for p in parts])), np.concatenate([p[1] for p in parts])


def domain_scores(table: pa.Table | Path, labels: pa.Table, blacklist: Blacklist, rules: DomainRules,
                  cached_scores: pa.Table | Path | None = None) -> list[DomainScore]:
    """``table``: a manifest (in memory or a Parquet file) with columns domain, image_id, status, sha256,
    irrelevant_score, duplicate_of. ``labels``: image_id, human_irrelevant. ``cached_scores``: image_id (or
    id_key), irrelevant_score: the relevance gate's scores of images earlier curations analysed
    (:func:`cache_irrelevant_scores`), used where the version carries no score (a harvest version)."""
    rows = compact_manifest(table)
    n_rows = rows.num_rows
    if n_rows == 0:
        return []
    harvested = _bool(rows.column("harvested"))
    failed = _bool(rows.column("failed"))
    id_key = rows.column("id_key").to_numpy()
    every = np.ones(n_rows, dtype=bool)

    score = np.asarray(rows.column("score").to_numpy(zero_copy_only=False), dtype=np.float64)
    if cached_scores is not None and np.isnan(score).any():
        index, values = keyed_values(cached_scores, "irrelevant_score")
        score = np.where(np.isnan(score), _take(values, index.find(id_key, every)), score)
    has_score = ~np.isnan(score) & harvested
    filter_irrelevant = (np.nan_to_num(score, nan=0.0) > rules.irrelevant_threshold) & has_score

    label_index, label_values = keyed_values(labels, "human_irrelevant")
    human = _take(label_values, label_index.find(id_key, every))
    labelled = ~np.isnan(human)
    human_irrelevant = labelled & (np.nan_to_num(human, nan=0.0) > 0.5)
    human_relevant = labelled & ~human_irrelevant

    evaluated = has_score | labelled
    irrelevant = np.where(labelled, human_irrelevant, filter_irrelevant) & evaluated
    exact = first_occurrence_duplicates(rows.column("sha_key").to_numpy(), _bool(rows.column("sha_valid")))
    duplicate = (_bool(rows.column("has_duplicate_of")) | exact) & harvested

    columns = {"harvested": harvested, "failed": failed, "filter_scored": has_score,
               "filter_irrelevant": filter_irrelevant, "human_relevant": human_relevant,
               "human_irrelevant": human_irrelevant, "scored": evaluated, "irrelevant": irrelevant,
               "duplicates": duplicate}
    per_row = pa.table({"domain": rows.column("domain"), **{k: pa.array(v.astype(np.int64)) for k, v in
                                                            columns.items()}})
    del rows
    grouped = per_row.group_by("domain").aggregate([("domain", "count"), *((name, "sum") for name in columns)])
    grouped = grouped.sort_by([("domain_count", "descending"), ("domain", "ascending")])
    g = {name: grouped.column(f"{name}_sum").to_numpy() for name in columns}
    images = grouped.column("domain_count").to_numpy()
    low, high = wilson_interval(g["irrelevant"], g["scored"], rules.wilson_z)
    filter_low, filter_high = wilson_interval(g["filter_irrelevant"], g["filter_scored"], rules.wilson_z)
    with np.errstate(divide="ignore", invalid="ignore"):
        share_irrelevant = g["irrelevant"] / g["scored"]
        share_filter = g["filter_irrelevant"] / g["filter_scored"]
        attempts = g["harvested"] + g["failed"]
        failure_rate = g["failed"] / attempts

    results = []
    for i, domain in enumerate(grouped.column("domain").to_pylist()):  # one iteration per domain, not per row
        entry = _domain_entry(blacklist, domain)
        scored = int(g["scored"][i])
        recommendation, why = _recommend(scored, float(low[i]), float(high[i]), rules)
        results.append(DomainScore(
            domain=domain, images=int(images[i]), share=float(images[i] / n_rows),
            harvested=int(g["harvested"][i]), failed=int(g["failed"][i]),
            failure_rate=_finite(failure_rate[i]),
            filter_scored=int(g["filter_scored"][i]), filter_irrelevant=int(g["filter_irrelevant"][i]),
            filter_irrelevant_share=_finite(share_filter[i]),
            filter_wilson_low=_finite(filter_low[i]), filter_wilson_high=_finite(filter_high[i]),
            human_relevant=int(g["human_relevant"][i]), human_irrelevant=int(g["human_irrelevant"][i]),
            scored=scored, irrelevant=int(g["irrelevant"][i]), irrelevant_share=_finite(share_irrelevant[i]),
            wilson_low=_finite(low[i]), wilson_high=_finite(high[i]), duplicates=int(g["duplicates"][i]),
            blacklisted=entry, recommendation=recommendation, why=why,
        ))
    return results


def _take(values: np.ndarray, position: np.ndarray) -> np.ndarray:
    """values[position], NaN where position is -1."""
    if len(values) == 0:
        return np.full(len(position), np.nan)
    return np.where(position >= 0, values[np.maximum(position, 0)], np.nan)


def _recommend(scored: int, low: float, high: float, rules: DomainRules) -> tuple[Recommendation, str]:
    if scored == 0:
        return Recommendation.review, "no image scored or labelled yet"
    if scored >= rules.min_scored and low > rules.blacklist_lower:
        return (Recommendation.blacklist,
                f"irrelevant share lower bound {low:.2f} > {rules.blacklist_lower} over {scored} images")
    if high > rules.review_upper:
        return (Recommendation.review,
                f"irrelevant share upper bound {high:.2f} > {rules.review_upper} ({scored} images evaluated)")
    return Recommendation.keep, f"irrelevant share upper bound {high:.2f} <= {rules.review_upper}"


def _domain_entry(blacklist: Blacklist, domain: str) -> str | None:
    for item in blacklist.entries:
        if item.path_prefix is None and item.matches(domain, "/"):
            return item.entry
    return None


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def score_version(store: ObjectStore, dataset: str, version: int, rules: DomainRules,
                  prior_log_odds: float = 0.0) -> tuple[int, list[DomainScore]]:
    """Domain scores of a stored version: the version and the analysis cache are streamed from local copies;
    images the version carries no score for are scored from the cache by the gate with the stored probe."""
    with tempfile.TemporaryDirectory() as tmp:
        info, path = ManifestStore(store).download(dataset, version, Path(tmp) / "manifest.parquet")
        cache_path = Path(tmp) / "scores.parquet"
        cached: pa.Table | None = None
        try:
            store.get_file(cache_key(dataset), cache_path)
        except ObjectNotFound:
            pass
        else:
            if is_current_cache(pq.read_schema(cache_path).names):  # an older cache: not analysed
                cached = cache_irrelevant_scores(cache_path, load_probe(store), prior_log_odds)
        scores = domain_scores(path, LabelStore(store).table(), BlacklistStore(store).get(), rules, cached)
    return info.rows, scores
