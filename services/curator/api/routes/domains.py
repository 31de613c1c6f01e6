"""Per-domain scores of a manifest version, and review samples of one domain."""

from __future__ import annotations

import secrets
from typing import Annotated

import pyarrow.compute as pc
from fastapi import APIRouter, HTTPException, Query, Response, status

from services.curator.analysis import read_cache
from services.curator.api.deps import CuratorSettingsDep, ManifestsDep, SettingsDep, StoreDep, resolve_version
from services.curator.domain_scores import DomainRules, score_version
from services.curator.filter.learned import CACHE_SCORE_COLUMNS, cache_irrelevant_scores
from services.curator.labels import LabelStore
from services.curator.review import DomainSample, SampleImage, contact_sheet, review_page, sample_rows
from services.curator.schemas import DomainReport, SampleFormat
from shared.relevance.store import load_probe
from shared.schemas import DatasetName

router = APIRouter(prefix="/domains", tags=["domains"])

NO_IMAGES = "no harvested images of this domain in the manifest version"


@router.get("", response_model=DomainReport)
def list_domains(
    store: StoreDep, manifests: ManifestsDep, defaults: CuratorSettingsDep, settings: SettingsDep,
    dataset: DatasetName, version: Annotated[int | None, Query(ge=1)] = None,
    min_scored: Annotated[int | None, Query(ge=1)] = None,
    blacklist_lower: Annotated[float | None, Query(ge=0, le=1)] = None,
    review_upper: Annotated[float | None, Query(ge=0, le=1)] = None,
    irrelevant_threshold: Annotated[float | None, Query(ge=0, le=1)] = None,
) -> DomainReport:
    version = resolve_version(manifests, dataset, version)
    rules = DomainRules(
        min_scored=min_scored or defaults.min_scored,
        blacklist_lower=defaults.blacklist_lower if blacklist_lower is None else blacklist_lower,
        review_upper=defaults.review_upper if review_upper is None else review_upper,
        irrelevant_threshold=defaults.irrelevant_threshold if irrelevant_threshold is None else irrelevant_threshold,
        wilson_z=defaults.wilson_z,
    )
    rows, scores = score_version(store, dataset, version, rules, settings.relevance_prior_log_odds)
    return DomainReport(dataset=dataset, version=version, rows=rows, rules=rules, domains=scores)


@router.get("/{domain}/sample", response_model=DomainSample,
            responses={200: {"content": {"image/png": {}, "text/html": {}}}})
def domain_sample(
    domain: str, store: StoreDep, manifests: ManifestsDep, defaults: CuratorSettingsDep, settings: SettingsDep,
    dataset: DatasetName, version: Annotated[int | None, Query(ge=1)] = None,
    n: Annotated[int, Query(ge=1)] = 24, seed: Annotated[int | None, Query(ge=0)] = None,
    format: SampleFormat = SampleFormat.json,
) -> DomainSample | Response:
    version = resolve_version(manifests, dataset, version)
    n = min(n, defaults.sample_max)
    seed = secrets.randbelow(2**31) if seed is None else seed
    table = manifests.read(dataset, version)
    rows = sample_rows(table, domain.lower(), n, seed)
    if rows.num_rows == 0:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_IMAGES)
    available = int(pc.sum(pc.and_(pc.equal(table.column("domain"), domain.lower()),
                                   pc.equal(table.column("status"), "ok"))).as_py() or 0)
    labels = LabelStore(store).all()
    # Rows of a version without scores (a harvest): the gate's scores of the cached analyses.
    cache = read_cache(store, dataset, columns=["image_id", *CACHE_SCORE_COLUMNS])
    cache = cache.filter(pc.is_in(cache.column("image_id"), value_set=rows.column("image_id")))
    scored = cache_irrelevant_scores(cache, load_probe(store), settings.relevance_prior_log_odds)
    by_key = dict(zip(scored.column("id_key").to_pylist(), scored.column("irrelevant_score").to_pylist(),
                      strict=True))
    cached = {image_id: by_key.get(key) for image_id, key in zip(cache.column("image_id").to_pylist(),
                                                                 cache.column("id_key").to_pylist(), strict=True)}
    images = [
        SampleImage(image_id=row["image_id"], observation_id=row["observation_id"], url=row["url"],
                    storage_key=row["storage_key"], image_url=store.presigned_get_url(row["storage_key"]),
                    irrelevant_score=row["irrelevant_score"] if row["irrelevant_score"] is not None
                    else cached.get(row["image_id"]),
                    label=labels[row["image_id"]].label.value if row["image_id"] in labels else None)
        for row in rows.to_pylist()
    ]
    sample = DomainSample(dataset=dataset, version=version, domain=domain.lower(), seed=seed, available=available,
                          images=images)
    if format is SampleFormat.png:
        return Response(contact_sheet(store, sample), media_type="image/png")
    if format is SampleFormat.html:
        return Response(review_page(sample), media_type="text/html; charset=utf-8")
    return sample
