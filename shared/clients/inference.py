"""The inference service's API: ask about a photo (bytes or a URL) or an observation (several photos of one
mushroom), and which model answers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, TypeAdapter

from shared.clients.base import ServiceClient
from shared.registry import ClassLabel


class ClassPrediction(BaseModel):
    label: str
    probability: float
    species: str | None = None
    genus: str | None = None


class Prediction(BaseModel):
    verdict: str = Field(description="confident, uncertain, unknown_species or not_a_mushroom")
    message: str
    predictions: list[ClassPrediction] = Field(description="top-k classes; empty when no species is named")
    relevance_score: float | None = None
    ood_score: float | None = None
    model_id: str
    safety_notice: str


class ObservationPhoto(BaseModel):
    index: int
    filename: str | None = None
    combined: bool = Field(description="whether the photo entered the combined answer (false: not a mushroom)")
    prediction: Prediction


class ObservationPrediction(BaseModel):
    verdict: str = Field(description="confident, uncertain, unknown_species or not_a_mushroom")
    message: str
    predictions: list[ClassPrediction]
    ood_score: float | None = None
    photos_combined: int
    photos: list[ObservationPhoto]
    model_id: str
    safety_notice: str


class ServedModel(BaseModel):
    model_id: str
    dataset: str
    manifest_version: int
    classes: list[ClassLabel]


class Readiness(BaseModel):
    ready: bool
    model_id: str | None = None
    detail: str | None = None


_PREDICTION = TypeAdapter(Prediction)
_OBSERVATION = TypeAdapter(ObservationPrediction)
_MODEL = TypeAdapter(ServedModel)
_READINESS = TypeAdapter(Readiness)


class InferenceClient(ServiceClient):
    service = "inference"

    def predict(self, photo: bytes | None = None, *, url: str | None = None, explain: bool = False,
                top_k: int | None = None) -> Prediction:
        """Identify the mushroom in one photo: its bytes (JPEG, PNG, WebP), or a URL the service fetches."""
        if (photo is None) == (url is None):
            raise ValueError("give the photo's bytes or its URL, one of the two")
        params: dict[str, Any] = {"explain": explain}
        if top_k is not None:
            params["top_k"] = top_k
        if url is not None:
            return self._call("POST", "/predict", _PREDICTION, params=params, json={"url": url})
        return self._call("POST", "/predict", _PREDICTION, params=params,
                          files={"file": ("photo", photo, "application/octet-stream")})

    def predict_observation(self, photos: list[bytes], *, top_k: int | None = None) -> ObservationPrediction:
        """One answer for several photos of one mushroom (the mean of its mushroom photos' logits), each photo's
        own answer beside it."""
        if not photos:
            raise ValueError("an observation needs at least one photo")
        params: dict[str, Any] = {} if top_k is None else {"top_k": top_k}
        files = [("files", (f"photo-{index}", photo, "application/octet-stream")) for index, photo in enumerate(photos)]
        return self._call("POST", "/predict/observation", _OBSERVATION, params=params, files=files)

    def model(self) -> ServedModel:
        """The model that answers; :class:`ServiceUnavailable` (503) while none is promoted or loaded."""
        return self._call("GET", "/model", _MODEL)

    def ready(self) -> Readiness:
        return self._call("GET", "/ready", _READINESS, accept={503})
