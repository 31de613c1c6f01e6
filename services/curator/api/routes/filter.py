"""The learned irrelevant-image filter: retrain on demand, show its held-out precision/recall."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from services.curator.api.deps import ManifestsDep, StoreDep, resolve_version
from services.curator.filter.learned import FilterCard, load_learned
from services.curator.filter.training import NotEnoughLabels, retrain
from shared.auth import TokenDep

router = APIRouter(prefix="/filter", tags=["filter"])

NO_FILTER = "no learned filter yet: label images and POST /filter/train"


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str
    threshold: float = Field(default=0.5, ge=0, le=1)


@router.get("", response_model=FilterCard)
def get_filter(store: StoreDep) -> FilterCard:
    learned = load_learned(store)
    if learned is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_FILTER)
    return learned[1]


@router.post("/train", response_model=FilterCard)
def train_filter(body: TrainRequest, store: StoreDep, manifests: ManifestsDep, _: TokenDep) -> FilterCard:
    resolve_version(manifests, body.dataset, None)
    try:
        return retrain(store, body.dataset, body.threshold)
    except NotEnoughLabels as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
