"""Human labels: relevant / irrelevant per image. They override the filter in curations and domain
scores, and train the relevance gate's probe."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, HTTPException, Query, status

from services.curator.api.deps import ManifestsDep, StoreDep, resolve_version
from services.curator.labels import LabelStore, StoredLabel
from services.curator.schemas import LabelRequest, LabelResult
from shared.auth import TokenDep
from shared.schemas import DatasetName

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/labels", tags=["labels"])

UNKNOWN_IMAGE = "label for an unknown image_id"


@router.post("", response_model=LabelResult)
def post_labels(body: LabelRequest, store: StoreDep, manifests: ManifestsDep, _: TokenDep) -> LabelResult:
    version = resolve_version(manifests, body.dataset, body.version)
    table = manifests.read(body.dataset, version, columns=["image_id", "domain", "storage_key"])
    wanted = pa.array([item.image_id for item in body.labels], pa.string())
    rows = table.filter(pc.is_in(table.column("image_id"), value_set=wanted))
    known = {row["image_id"]: row for row in rows.to_pylist()}
    unknown = [item.image_id for item in body.labels if item.image_id not in known]
    if unknown:
        logger.info("labels refused: %d unknown image ids in %s v%d", len(unknown), body.dataset, version)
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{UNKNOWN_IMAGE}: {', '.join(unknown[:5])}")
    now = datetime.now(UTC)
    stored = [StoredLabel(image_id=item.image_id, label=item.label, dataset=body.dataset,
                          domain=known[item.image_id]["domain"], storage_key=known[item.image_id]["storage_key"],
                          actor=body.actor, at=now) for item in body.labels]
    total = LabelStore(store).add(stored)
    return LabelResult(stored=len(stored), total_labelled=total)


@router.get("", response_model=list[StoredLabel])
def list_labels(store: StoreDep, dataset: Annotated[DatasetName | None, Query()] = None,
                domain: Annotated[str | None, Query()] = None) -> list[StoredLabel]:
    return [item for item in LabelStore(store).all().values()
            if (dataset is None or item.dataset == dataset) and (domain is None or item.domain == domain)]
