"""Dependencies of the inference routes, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.inference.core.config import InferenceSettings, get_inference_settings
from services.inference.metrics import ServiceMetrics
from services.inference.predictor import Predictor


def get_predictor(request: Request) -> Predictor:
    predictor: Predictor = request.app.state.predictor
    return predictor


def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


PredictorDep = Annotated[Predictor, Depends(get_predictor)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
InferenceSettingsDep = Annotated[InferenceSettings, Depends(get_inference_settings)]
