"""GET /model: which model answers /predict."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException

from services.inference.api.deps import PredictorDep
from services.inference.predictor import ModelUnavailable
from services.inference.schemas import ModelInfo, RefusedModel
from shared.api import error_responses

router = APIRouter(prefix="/model", tags=["model"])


@router.get("", response_model=ModelInfo,
            responses=error_responses({503: "no model is promoted yet, or it is being loaded"}))
def served_model(predictor: PredictorDep) -> ModelInfo:
    try:
        model = predictor.model()
    except ModelUnavailable as exc:
        raise HTTPException(503, str(exc)) from None
    card = model.card
    refused = predictor.watcher.refused
    return ModelInfo(
        model_id=card.model_id, dataset=card.dataset, manifest_version=card.manifest_version,
        taxon_level=card.taxon_level.value, backbone=card.backbone, image_size=card.image_size,
        classes=card.classes, metrics=card.metrics, promoted_at=model.promoted_at,
        loaded_at=datetime.fromtimestamp(model.loaded_at, UTC),
        refused=RefusedModel(model_id=refused.model_id, promoted_at=refused.promoted_at, reason=refused.reason)
        if refused else None,
    )
