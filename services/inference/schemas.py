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
    confident = "confident"  # a species, with a calibrated probability at or over the model's uncertain_below
    uncertain = "uncertain"  # a mushroom of a kind it knows, but no species is likely enough: the genus
    unknown_species = "unknown_species"  # a photo of a fungus, unlike every class this model was trained on
    not_a_mushroom = "not_a_mushroom"  # not a photo of a fungus at all (the relevance gate), nor like one it knows


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
    ood_score: float | None = Field(
        default=None, description="distance to the model's training photos (k-th nearest neighbour of its embedding) "
        "over the threshold fitted on validation: above 1 it is unlike every class it knows; null for a model "
        "without an open-set bank")
    relevance_score: float | None = Field(
        default=None, description="the relevance gate's probability that this is a photo of a fungus (null: gate off)")
    gate_version: str | None = Field(default=None, description="the relevance gate that judged (pretrained + probe)")
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


class ObservationPhoto(BaseModel):
    index: int = Field(description="the photo's position in the upload, from 0")
    filename: str | None = None
    combined: bool = Field(description="whether its logits entered the observation's answer (false: not a "
                           "photo of a mushroom, by the same rule as a single photo's not_a_mushroom)")
    prediction: Prediction = Field(description="this photo's own answer, as POST /predict gives it")


class ObservationPrediction(BaseModel):
    """One answer for several photos of one mushroom: the mean of the mushroom photos' logits."""

    verdict: Verdict
    message: str
    predictions: list[ClassPrediction] = Field(description="top-k classes of the combined answer; empty when no "
                                               "species is named")
    genus: GroupPrediction | None = Field(default=None, description="the genus the summed probabilities support")
    ood_score: float | None = Field(
        default=None, description="the mean ood_score of the combined photos (above 1: unlike every class it "
        "knows); null without an open-set bank, or when no photo is of a mushroom")
    combination: str = Field(default="mean_logits", description="how the photos were combined")
    photos_combined: int = Field(description="how many photos entered the answer")
    photos: list[ObservationPhoto]
    model_id: str
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


class Readiness(BaseModel):
    ready: bool
    model_id: str | None = None
    detail: str | None = None
