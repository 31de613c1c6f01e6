"""Dependencies of the inference routes, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.inference.core.config import InferenceSettings, get_inference_settings
from services.inference.predictor import Predictor
from shared.api import SettingsDep


def get_predictor(request: Request) -> Predictor:
    predictor: Predictor = request.app.state.predictor
    return predictor


PredictorDep = Annotated[Predictor, Depends(get_predictor)]
InferenceSettingsDep = Annotated[InferenceSettings, Depends(get_inference_settings)]

# the shared dependencies are re-exported: routes import every dependency from here
__all__ = ["InferenceSettingsDep", "PredictorDep", "SettingsDep", "get_predictor"]
