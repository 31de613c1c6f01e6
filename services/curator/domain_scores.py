"""Per-domain scores of one manifest version, computed column-wise (pyarrow + numpy, no row loops).

For each domain: its images and share of the dataset, harvest failures, human labels, the automatic
filter's irrelevant share with a Wilson interval, duplicates, and a keep / review / blacklist
recommendation from :class:`DomainRules`.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from shared.curation import Blacklist
from shared.schemas import HarvestStatus


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
    codes = pc.dictionary_encode(sha256)
    if isinstance(codes, pa.ChunkedArray):
        codes = codes.combine_chunks()
    indices = codes.indices.to_numpy(zero_copy_only=False)
    valid = ~np.asarray(pc.is_null(sha256).to_numpy(zero_copy_only=False), dtype=bool)
    indices = np.where(valid, indices, -1)
    _, first = np.unique(indices, return_index=True)
    duplicate = valid.copy()
    duplicate[first] = False
    return duplicate


def _bool(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def domain_scores(table: pa.Table, labels: pa.Table, blacklist: Blacklist, rules: DomainRules,
                  cached_scores: pa.Table | None = None) -> list[DomainScore]:
    """``table``: manifest columns domain, image_id, status, sha256, irrelevant_score, duplicate_of.
    ``labels``: image_id, human_irrelevant. ``cached_scores``: image_id, irrelevant_score from earlier curations,
    used where the version itself carries no score (a harvest version)."""
    n_rows = table.num_rows
    status = table.column("status")
    harvested = _bool(pc.equal(status, HarvestStatus.ok.value))
    failed = _bool(pc.equal(status, HarvestStatus.failed.value))

    score = table.column("irrelevant_score")
    if cached_scores is not None and cached_scores.num_rows and score.null_count:
        position = pc.index_in(table.column("image_id"), value_set=cached_scores.column("image_id"))
        score = pc.coalesce(score, pc.take(cached_scores.column("irrelevant_score"), position))
    has_score = _bool(pc.is_valid(score)) & harvested
    filter_irrelevant = _bool(pc.greater(score, rules.irrelevant_threshold)) & has_score

    position = pc.index_in(table.column("image_id"), value_set=labels.column("image_id"))
    human = pc.take(labels.column("human_irrelevant"), position)
    labelled = _bool(pc.is_valid(human))
    human_irrelevant = _bool(human) & labelled
    human_relevant = labelled & ~human_irrelevant

    evaluated = has_score | labelled
    irrelevant = np.where(labelled, human_irrelevant, filter_irrelevant) & evaluated
    duplicate = (_bool(pc.is_valid(table.column("duplicate_of"))) | exact_duplicates(table.column("sha256"))) \
        & harvested

    columns = {"harvested": harvested, "failed": failed, "filter_scored": has_score,
               "filter_irrelevant": filter_irrelevant, "human_relevant": human_relevant,
               "human_irrelevant": human_irrelevant, "scored": evaluated, "irrelevant": irrelevant,
               "duplicates": duplicate}
    per_row = pa.table({"domain": table.column("domain"), **{k: pa.array(v.astype(np.int64)) for k, v in
                                                             columns.items()}})
    grouped = per_row.group_by("domain").aggregate([("domain", "count"), *((name, "sum") for name in columns)])
    grouped = grouped.sort_by([("domain_count", "descending"), ("domain", "ascending")])
    g = {name: grouped.column(f"{name}_sum").to_numpy() for name in columns}
    images = grouped.column("domain_count").to_numpy()
    low, high = wilson_interval(g["irrelevant"], g["scored"], rules.wilson_z)
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
            human_relevant=int(g["human_relevant"][i]), human_irrelevant=int(g["human_irrelevant"][i]),
            scored=scored, irrelevant=int(g["irrelevant"][i]), irrelevant_share=_finite(share_irrelevant[i]),
            wilson_low=_finite(low[i]), wilson_high=_finite(high[i]), duplicates=int(g["duplicates"][i]),
            blacklisted=entry, recommendation=recommendation, why=why,
        ))
    return results


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
