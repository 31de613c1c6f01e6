"""The inference API's request and response types."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.registry import ClassLabel

SAFETY_NOTICE = (
    "Never eat a wild mushroom on the strength of a model's answer: many edible species have deadly "
    "look-alikes. Ask an expert who can examine the mushroom itself."
)


class Verdict(StrEnum):
    confident = "confident"
    uncertain = "uncertain"
    not_a_mushroom = "not_a_mushroom"


class PredictUrl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048, description="an http(s) URL of a JPEG, PNG or WebP photo")


class ClassPrediction(BaseModel):
    label: str
    probability: float
    species: str | None = None
    genus: str | None = None
    family: str | None = None


class GroupPrediction(BaseModel):
    """A genus (or family) with the summed probability of its classes."""

    name: str
    probability: float
    family: str | None = None


class Prediction(BaseModel):
    verdict: Verdict
    message: str
    predictions: list[ClassPrediction] = Field(description="top-k classes; empty when it is not a mushroom photo")
    genus: GroupPrediction | None = Field(default=None, description="the genus the summed probabilities support")
    ood_score: float = Field(description="normalised entropy of the answer: 1 = no idea at all")
    irrelevant_score: float | None = Field(default=None, description="the curator's 'not a field photo' score")
    model_id: str
    elapsed_ms: float
    safety_notice: str = SAFETY_NOTICE
    heatmap_png: str | None = Field(default=None, description="Grad-CAM overlay, base64 PNG (explain=true)")


class BatchItem(BaseModel):
    index: int
    filename: str | None = None
    prediction: Prediction | None = None
    status_code: int = 200
    error: str | None = None


class BatchPrediction(BaseModel):
    results: list[BatchItem]
    elapsed_ms: float
    safety_notice: str = SAFETY_NOTICE


class RefusedModel(BaseModel):
    model_id: str
    promoted_at: datetime
    reason: str


class ModelInfo(BaseModel):
    model_id: str
    dataset: str
    manifest_version: int
    taxon_level: str
    backbone: str
    image_size: int
    classes: list[ClassLabel]
    metrics: dict[str, float]
    promoted_at: datetime | None = None
    loaded_at: datetime
    refused: RefusedModel | None = None


class Health(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    ready: bool
    model_id: str | None = None
    detail: str | None = None
