"""A curation: one manifest version in, a new version out (operation ``curation``, parent = input).

Rows are never deleted: blacklisted, not harvested, broken, too small, irrelevant and duplicate rows
get ``excluded_reason`` (plus ``irrelevant_score`` and ``duplicate_of``), and a report counts them by
reason and by domain. The decision is recomputed from the current blacklist, labels and rules on every
run, so removing a domain from the blacklist puts its rows back in the next curation.

``services.curator.jobs.run_curation`` runs ``curate`` as an RQ job (queue ``curate``); its state lives in the job
and, durably, in ``curation/runs/<id>.json``.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.curator.analysis import analyses_to_table, analyze_stored_many, read_cache, reading_of, write_cache
from services.curator.blacklist import BlacklistStore
from services.curator.duplicates import duplicate_groups
from services.curator.filter.learned import gate_in_force, pretrained_gate
from services.curator.labels import LabelStore
from shared.curation import Blacklist
from shared.manifests import ManifestStore
from shared.queue import JobState, report_progress
from shared.relevance.gate import RelevanceGate
from shared.schemas import ExclusionReason, HarvestStatus, Operation
from shared.settings import Settings, get_settings
from shared.storage import ObjectNotFound, ObjectStore

logger = logging.getLogger(__name__)

CURATION_ID = re.compile(r"^[0-9a-f]{16,32}$")
# When one row has several reasons, the first in this order is recorded.
REASON_ORDER = (ExclusionReason.blacklisted, ExclusionReason.not_harvested, ExclusionReason.broken,
                ExclusionReason.too_small, ExclusionReason.irrelevant, ExclusionReason.duplicate)


class FilterChoice(StrEnum):
    relevance = "relevance"  # the shared relevance gate, with the probe trained on labels (zero-shot if none)
    statistics = "statistics"  # baseline for comparison only: fixed weights fitted to drawn fixture images


class CurationRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    irrelevant_threshold: float = Field(default=0.5, ge=0, le=1, description="exclude when the score is above")
    min_side: int = Field(default=64, ge=1, le=10_000, description="exclude images whose shorter side is smaller")
    duplicate_distance: int = Field(default=4, ge=0, le=16, description="pHash Hamming distance of near-duplicates")
    exclude_duplicates: bool = True
    filter: FilterChoice = FilterChoice.relevance

    @field_validator("filter", mode="before")
    @classmethod
    def _legacy_filter(cls, value: object) -> object:
        # Run records stored before the shared relevance gate named the old filters.
        return {"learned": "relevance", "stage1": "statistics"}.get(value, value) if isinstance(value, str) else value


class CurationReport(BaseModel):
    rows: int
    included: int
    excluded: dict[str, int] = Field(description="rows per exclusion reason")
    by_domain: dict[str, dict[str, int]] = Field(description="per domain: rows, included, and rows per reason")
    cross_observation_duplicates: int = Field(description="duplicates whose original is in another observation")
    cross_observation_examples: list[tuple[str, str]] = Field(
        default_factory=list, description="up to 100 (duplicate image_id, original image_id) pairs across "
        "observations: they would leak between train and validation splits")
    analysed: int = Field(description="images fetched and analysed in this run")
    reused: int = Field(description="images whose analysis came from the cache")
    filter: str = Field(description="the judge: the relevance gate's version, or the statistics baseline")
    blacklist_revision: int
    labels_used: int


class CurationRun(BaseModel):
    id: str
    dataset: str
    version: int
    rules: CurationRules
    state: JobState
    created_at: datetime
    finished_at: datetime | None = None
    output_version: int | None = None
    report: CurationReport | None = None
    error: str | None = None

    @field_validator("state", mode="before")
    @classmethod
    def _legacy_state(cls, value: object) -> object:
        # Run records stored before the shared JobState said "finished" for a completed curation.
        return JobState.completed if value == "finished" else value


def run_key(curation_id: str) -> str:
    return f"curation/runs/{curation_id}.json"


def save_run(store: ObjectStore, run: CurationRun) -> None:
    store.put_json(run_key(run.id), run.model_dump(mode="json"))


def load_run(store: ObjectStore, curation_id: str) -> CurationRun | None:
    try:
        return CurationRun.model_validate(store.get_json(run_key(curation_id)))
    except ObjectNotFound:
        return None


def blacklist_entries(table: pa.Table, blacklist: Blacklist) -> pa.Array:
    """Per row, the blacklist entry covering its URL (null if none); Python work only per domain and for
    rows of domains that have path-prefix entries."""
    domains = table.column("domain")
    result = pa.nulls(table.num_rows, pa.string())
    out: np.ndarray = np.full(table.num_rows, None, dtype=object)
    for domain in pc.unique(domains).to_pylist():
        entries = [e for e in blacklist.entries if e.matches(domain, e.path_prefix or "/")]
        if not entries:
            continue
        rows = np.flatnonzero(np.asarray(pc.equal(domains, domain).to_numpy(zero_copy_only=False), dtype=bool))
        whole = next((e for e in entries if e.path_prefix is None), None)
        if whole is not None:
            out[rows] = whole.entry
            continue
        urls = pc.take(table.column("url"), pa.array(rows)).to_pylist()
        for row, url in zip(rows, urls, strict=True):
            match = blacklist.match(url)
            out[row] = match.entry if match else None
    if any(value is not None for value in out):
        result = pa.array(out.tolist(), pa.string())
    return result


def curate_table(table: pa.Table, analyses: pa.Table, scores: np.ndarray, blacklist: Blacklist,
                 labels: pa.Table, rules: CurationRules) -> tuple[pa.Table, dict[str, Any]]:
    """Pure: mark exclusions on ``table``. ``analyses`` is aligned with ``table`` (null rows: not analysed);
    ``scores`` the filter score per row (NaN: none)."""
    n = table.num_rows
    reasons = np.full(n, None, dtype=object)

    def mark(mask: np.ndarray, reason: ExclusionReason) -> None:
        reasons[mask & (reasons == None)] = reason.value  # noqa: E711 - elementwise comparison

    entries = blacklist_entries(table, blacklist)
    mark(np.asarray(pc.is_valid(entries).to_numpy(zero_copy_only=False), dtype=bool), ExclusionReason.blacklisted)
    harvested = np.asarray(pc.fill_null(pc.equal(table.column("status"), HarvestStatus.ok.value), False)
                           .to_numpy(zero_copy_only=False), dtype=bool) & \
        np.asarray(pc.is_valid(table.column("storage_key")).to_numpy(zero_copy_only=False), dtype=bool)
    mark(~harvested, ExclusionReason.not_harvested)
    broken = np.asarray(pc.fill_null(analyses.column("broken"), True).to_numpy(zero_copy_only=False), dtype=bool)
    mark(broken, ExclusionReason.broken)
    width = pc.coalesce(table.column("width"), analyses.column("width")).to_numpy(zero_copy_only=False)
    height = pc.coalesce(table.column("height"), analyses.column("height")).to_numpy(zero_copy_only=False)
    side = np.nan_to_num(np.minimum(width.astype(np.float64), height.astype(np.float64)), nan=0.0)
    mark(~broken & (side < rules.min_side), ExclusionReason.too_small)

    position = pc.index_in(table.column("image_id"), value_set=labels.column("image_id"))
    human = pc.take(labels.column("human_irrelevant"), position)
    labelled = np.asarray(pc.is_valid(human).to_numpy(zero_copy_only=False), dtype=bool)
    human_irrelevant = np.asarray(pc.fill_null(human, False).to_numpy(zero_copy_only=False), dtype=bool)
    # A person's label overrides the filter, both ways.
    irrelevant = np.where(labelled, human_irrelevant, np.nan_to_num(scores, nan=0.0) > rules.irrelevant_threshold)
    mark(irrelevant & ~broken, ExclusionReason.irrelevant)

    duplicate_of = np.full(n, None, dtype=object)
    cross_observation = 0
    examples: list[tuple[str, str]] = []
    if rules.exclude_duplicates:
        candidates = np.flatnonzero((reasons == None) & harvested & ~broken)  # noqa: E711
        if len(candidates):
            phash = analyses.column("phash").to_numpy(zero_copy_only=False)[candidates].astype(np.int64)
            sha = pc.take(table.column("sha256"), pa.array(candidates)).to_pylist()
            first = duplicate_groups(sha, phash, rules.duplicate_distance)
            dup = first >= 0
            ids = np.asarray(table.column("image_id").to_pylist(), dtype=object)
            observations = np.asarray(table.column("observation_id").to_pylist(), dtype=object)
            rows, originals = candidates[dup], candidates[first[dup]]
            duplicate_of[rows] = ids[originals]
            reasons[rows] = ExclusionReason.duplicate.value
            across = observations[rows] != observations[originals]
            cross_observation = int(across.sum())
            examples = [(str(a), str(b)) for a, b in zip(ids[rows[across]][:100], ids[originals[across]][:100],
                                                         strict=True)]

    score_column = pa.array(scores.astype(np.float32), pa.float32(), mask=np.isnan(scores))
    out = table.set_column(table.schema.get_field_index("excluded_reason"), "excluded_reason",
                           pa.array(reasons.tolist(), pa.string()))
    out = out.set_column(out.schema.get_field_index("irrelevant_score"), "irrelevant_score", score_column)
    out = out.set_column(out.schema.get_field_index("duplicate_of"), "duplicate_of",
                         pa.array(duplicate_of.tolist(), pa.string()))
    for name, column in (("width", width), ("height", height)):
        values = np.asarray(column, dtype=np.float64)
        out = out.set_column(out.schema.get_field_index(name), name,
                             pa.array(np.nan_to_num(values).astype(np.int32), pa.int32(), mask=np.isnan(values)))

    reason_column = pa.array(reasons.tolist(), pa.string())
    excluded = {reason.value: int((reasons == reason.value).sum()) for reason in REASON_ORDER}
    counted = pa.table({"domain": table.column("domain"), "reason": pc.fill_null(reason_column, "included")}) \
        .group_by(["domain", "reason"]).aggregate([("reason", "count")])
    by_domain: dict[str, dict[str, int]] = {}
    for domain, reason, count in zip(*(counted.column(c).to_pylist() for c in ("domain", "reason", "reason_count")),
                                     strict=True):  # one iteration per (domain, reason) pair, not per row
        entry = by_domain.setdefault(domain, {"rows": 0, "included": 0})
        entry["rows"] += count
        entry[reason] = count
    by_domain = dict(sorted(by_domain.items()))
    stats = {"rows": n, "included": int((reasons == None).sum()), "excluded": excluded,  # noqa: E711
             "by_domain": by_domain, "cross_observation_duplicates": cross_observation,
             "cross_observation_examples": examples,
             "labels_used": int(labelled.sum())}
    return out, stats


def analyse_rows(store: ObjectStore, dataset: str, table: pa.Table, gate: RelevanceGate,
                 concurrency: int) -> tuple[pa.Table, int, int]:
    """Analyses aligned with ``table`` rows (null for rows not harvested), reusing the dataset's cache where
    the same image (image_id, sha256) was read by the same pretrained model."""
    cache = read_cache(store, dataset)
    status_ok = pc.and_(pc.fill_null(pc.equal(table.column("status"), HarvestStatus.ok.value), False),
                        pc.is_valid(table.column("storage_key")))
    ids = table.column("image_id").to_pylist()
    shas = table.column("sha256").to_pylist()
    keys = table.column("storage_key").to_pylist()
    ok = np.asarray(status_ok.to_numpy(zero_copy_only=False), dtype=bool)
    name = gate.pretrained.name

    def key(image_id: object, sha: object, gate_name: object) -> str:
        return f"{image_id}\0{sha}\0{gate_name}"

    cached = {key(*row) for row in zip(*(cache.column(c).to_pylist() for c in ("image_id", "sha256", "gate")),
                                       strict=True)} if cache.num_rows else set()
    todo = [i for i in np.flatnonzero(ok) if key(ids[i], shas[i], name) not in cached]
    report_progress(stage="analysing", total=len(todo), done=0)
    fresh = []
    items = [(ids[i], shas[i], keys[i]) for i in todo]
    for count, analysis in enumerate(analyze_stored_many(store, gate, items, concurrency), 1):
        fresh.append(analysis)
        if count % 200 == 0:
            report_progress(done=count)
    report_progress(done=len(todo))
    new = analyses_to_table(fresh)
    if new.num_rows:
        write_cache(store, dataset, cache, new)
    combined = pa.concat_tables([cache, new]) if cache.num_rows else new
    lookup = {key(*row): i for i, row in enumerate(zip(*(combined.column(c).to_pylist() for c in
                                                         ("image_id", "sha256", "gate")), strict=True))}
    positions = [lookup.get(key(ids[i], shas[i], name)) if ok[i] else None for i in range(table.num_rows)]
    aligned = combined.take(pa.array(positions, pa.int64()))
    return aligned, len(todo), int(ok.sum()) - len(todo)


def filter_scores(analyses: pa.Table, gate: RelevanceGate, choice: FilterChoice) -> tuple[np.ndarray, str]:
    """The irrelevant score per row (NaN where not analysed or broken) and the name of what judged."""
    valid = np.asarray(pc.and_(pc.invert(pc.fill_null(analyses.column("broken"), True)),
                               pc.is_valid(analyses.column("fungus_probability"))).to_numpy(zero_copy_only=False),
                       dtype=bool)
    scores = np.full(analyses.num_rows, np.nan)
    if choice is FilterChoice.statistics:
        statistics = np.asarray(analyses.column("statistics").to_numpy(zero_copy_only=False), dtype=np.float64)
        scores[valid] = statistics[valid]
        return scores, "statistics (baseline: fixed weights fitted to drawn fixture images)"
    if valid.any():
        scores[valid] = gate.irrelevant_score(reading_of(analyses.filter(pa.array(valid))))
    return scores, f"relevance gate {gate.version}"


def load_worker_gate(store: ObjectStore, settings: Settings) -> RelevanceGate:
    """The pretrained model (loaded once per worker process) with the probe stored now."""
    gate = pretrained_gate(settings.relevance_pretrained, settings.work_dir, settings.relevance_prior_log_odds)
    return gate_in_force(store, gate)


def curate(store: ObjectStore, run: CurationRun) -> tuple[CurationReport, int]:
    from services.curator.core.config import get_curator_settings

    manifests = ManifestStore(store)
    report_progress(stage="reading")
    table = manifests.read(run.dataset, run.version)
    report_progress(stage="loading the relevance gate")
    gate = load_worker_gate(store, get_settings())
    analyses, analysed, reused = analyse_rows(store, run.dataset, table, gate,
                                              get_curator_settings().fetch_concurrency)
    scores, filter_name = filter_scores(analyses, gate, run.rules.filter)
    blacklist = BlacklistStore(store).get()
    report_progress(stage="deciding")
    curated, stats = curate_table(table, analyses, scores, blacklist, LabelStore(store).table(), run.rules)
    report = CurationReport(**stats, analysed=analysed, reused=reused, filter=filter_name,
                            blacklist_revision=blacklist.revision)
    flat = {"rows": report.rows, "included": report.included, **{f"excluded_{k}": v for k, v in
                                                                  report.excluded.items()}}
    info = manifests.write(run.dataset, curated, Operation.curation, parent=run.version,
                           source=f"curation {run.id}", stats=flat)
    report_progress(stage="done", output_version=info.version)
    logger.info("curation %s: %s v%d -> v%d, %d of %d rows included", run.id, run.dataset, run.version,
                info.version, report.included, report.rows)
    return report, info.version
