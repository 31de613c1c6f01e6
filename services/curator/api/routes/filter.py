"""The relevance gate's probe: retrain it from human labels on demand, show it and its held-out figures."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from services.curator.api.deps import ManifestsDep, SettingsDep, StoreDep, resolve_version
from services.curator.filter.learned import FilterStatus
from services.curator.filter.training import NotEnoughLabels, retrain
from services.curator.schemas import TrainRequest
from shared.auth import TokenDep
from shared.relevance.probe import RelevanceProbe
from shared.relevance.store import load_probe

router = APIRouter(prefix="/filter", tags=["filter"])


@router.get("", response_model=FilterStatus)
def get_filter(store: StoreDep, settings: SettingsDep) -> FilterStatus:
    probe = load_probe(store)
    if probe is None:
        return FilterStatus(gate=f"{settings.relevance_pretrained}+zero-shot", mode="zero-shot",
                            prior_log_odds=settings.relevance_prior_log_odds)
    return FilterStatus(gate=f"{probe.pretrained}+{probe.version}", mode="probe",
                        prior_log_odds=settings.relevance_prior_log_odds, probe=probe)


@router.post("/train", response_model=RelevanceProbe)
def train_filter(body: TrainRequest, store: StoreDep, manifests: ManifestsDep, settings: SettingsDep,
                 _: TokenDep) -> RelevanceProbe:
    resolve_version(manifests, body.dataset, None)
    try:
        return retrain(store, body.dataset, settings.relevance_prior_log_odds, body.threshold, body.l2)
    except NotEnoughLabels as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
