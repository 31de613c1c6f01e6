"""Readiness: whether a model serves yet (``/health`` and ``/metrics`` come from the shared skeleton)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.inference.api.deps import PredictorDep
from services.inference.predictor import NO_MODEL
from services.inference.schemas import Readiness

router = APIRouter(tags=["health"])


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
def ready(predictor: PredictorDep, response: Response) -> Readiness:
    """200 with ready=true once a model serves; 503 with ready=false before (so probes can use the status)."""
    model = predictor.watcher.current
    if model is None:
        response.status_code = 503
        return Readiness(ready=False, detail=NO_MODEL)
    return Readiness(ready=True, model_id=model.model_id)
