"""The model registry contract: what the trainer writes and the inference service loads.

Layout in the bucket::

    models/<model_id>/card.json      ModelCard: status, lineage (dataset + manifest version), classes, metrics
    models/<model_id>/model.keras    the Keras model; preprocessing inside it (see below)
    models/<model_id>/openset.npz    the novelty scorer (shared.openset.load_scorer): Mahalanobis or a kNN bank
    models/<model_id>/calibration.json  temperature, validation ECE and reliability bins before/after
    models/<model_id>/...            spec, history, plots, SavedModel, TFLite (written by the trainer)
    models/promoted.json             PromotedPointer: the model /predict serves (compare-and-set)

Model I/O contract: input ``float32`` RGB images, shape ``(batch, image_size, image_size, 3)``, values in
``[0, 255]`` (rescaling and normalisation are layers inside the model, so serving cannot drift from
training); output ``(batch, len(classes))`` in the order of ``ModelCard.classes``, which ``ModelCard.output``
names:

- ``"logits"`` (every model trained since open-set scoring): unnormalised scores. Calibrated probabilities
  are ``shared.openset.softmax(logits, card.openset.temperature)``; never apply a softmax inside the model.
- ``"probabilities"`` (older cards, the default when the field is absent): softmax probabilities.

Open-set contract (``ModelCard.openset``, present on new models): the penultimate embedding is the output of
the layer named ``pool`` (``shared.openset.embedding_model`` returns ``[features, logits]`` in one pass);
``load_scorer(openset.npz).score(features) > card.openset.threshold`` means "not a class this model knows";
a calibrated top-1 probability under ``card.openset.uncertain_below`` means "uncertain". Everything in
``openset`` was fitted on the train and validation splits; test figures in ``metrics`` are only reported.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.openset import OpenSetCard
from shared.schemas import TaxonLevel
from shared.storage import ObjectNotFound, ObjectStore, TooMuchContention

PROMOTED_KEY = "models/promoted.json"
MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,63}$")


class ModelStatus(StrEnum):
    training = "training"
    complete = "complete"
    failed = "failed"


class ClassLabel(BaseModel):
    index: int = Field(ge=0)
    name: str = Field(description="the label trained on, at the job's taxon level")
    species: str | None = None
    genus: str | None = None
    family: str | None = None


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: str
    status: ModelStatus
    created_at: datetime
    dataset: str
    manifest_version: int
    taxon_level: TaxonLevel = TaxonLevel.species
    backbone: str
    image_size: int = Field(ge=16)
    classes: list[ClassLabel]
    metrics: dict[str, float] = Field(
        default_factory=dict,
        description="validation figures (val_top1, best_val_accuracy: what model choice uses) and test figures, "
                    "reported only (top1, top3, top5, macro_f1, test_ece, test_novelty_retained)")
    test_split_hash: str | None = Field(
        default=None, description="identifies the split (by its test images): models are compared only on the same")
    output: Literal["logits", "probabilities"] = Field(
        default="probabilities", description="what model.keras outputs; cards from before logits say probabilities")
    openset: OpenSetCard | None = Field(
        default=None, description="kNN out-of-distribution threshold and temperature calibration (new models)")
    spec: dict[str, Any] = Field(default_factory=dict, description="the TrainingJobSpec it was trained from")
    artifacts: list[str] = Field(default_factory=list, description="file names under models/<model_id>/")
    error: str | None = Field(default=None, description="why a failed model failed")
    job_id: str | None = Field(default=None, description="the training job (RQ queue `train`) that produced it")


class PromotedPointer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: str
    promoted_at: datetime
    promoted_by: str = "api"


class ModelNotFound(LookupError):
    pass


class PromotionRefused(ValueError):
    pass


def model_key(model_id: str, name: str) -> str:
    if not MODEL_ID.match(model_id):
        raise ModelNotFound(f"invalid model id {model_id!r}")
    return f"models/{model_id}/{name}"


class ModelRegistry:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def save_card(self, card: ModelCard) -> None:
        self.store.put_json(model_key(card.model_id, "card.json"), card.model_dump(mode="json"))

    def card(self, model_id: str) -> ModelCard:
        try:
            return ModelCard.model_validate(self.store.get_json(model_key(model_id, "card.json")))
        except ObjectNotFound:
            raise ModelNotFound(f"no model {model_id!r}") from None

    def cards(self) -> list[ModelCard]:
        cards = [
            ModelCard.model_validate(self.store.get_json(key))
            for key in self.store.list("models/")
            if key.endswith("/card.json") and key.count("/") == 2
        ]
        return sorted(cards, key=lambda card: card.created_at, reverse=True)

    def promoted(self) -> PromotedPointer | None:
        pointer = self.store.read_pointer(PROMOTED_KEY)
        return PromotedPointer.model_validate(pointer.value) if pointer else None

    def promote(self, model_id: str, by: str = "api") -> PromotedPointer:
        """Point /predict at ``model_id``; only a complete model can be promoted."""
        card = self.card(model_id)
        if card.status is not ModelStatus.complete:
            raise PromotionRefused(f"model {model_id!r} is {card.status.value}; only a complete model can be promoted")
        if "model.keras" not in card.artifacts:
            raise PromotionRefused(f"model {model_id!r} has no model.keras artifact")
        new = PromotedPointer(model_id=model_id, promoted_at=datetime.now(UTC), promoted_by=by)
        try:
            self.store.update(PROMOTED_KEY, lambda _current: new.model_dump(mode="json"), attempts=20)
        except TooMuchContention:
            raise PromotionRefused("the promoted pointer changed 20 times while promoting; try again") from None
        return new


CONTRACT_MODELS: dict[str, type[BaseModel]] = {"ModelCard": ModelCard, "PromotedPointer": PromotedPointer}
