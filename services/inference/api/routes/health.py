"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.inference.api.deps import MetricsDep, PredictorDep
from services.inference.predictor import NO_MODEL
from services.inference.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health() -> Health:
    return Health()


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
def ready(predictor: PredictorDep, response: Response) -> Readiness:
    """200 with ready=true once a model serves; 503 with ready=false before (so probes can use the status)."""
    model = predictor.watcher.current
    if model is None:
        response.status_code = 503
        return Readiness(ready=False, detail=NO_MODEL)
    return Readiness(ready=True, model_id=model.model_id)


@router.get("/metrics", response_model=None, response_class=Response)
def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
