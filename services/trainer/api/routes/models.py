"""The model registry: list, inspect (artifacts, metrics, history), download artifacts, promote."""

from __future__ import annotations

import mimetypes
from typing import Any

from fastapi import APIRouter, HTTPException, Response, status

from services.trainer.api.deps import RegistryDep, StoreDep
from services.trainer.schemas import IdPath, ModelDetail, ModelSummary
from shared.auth import TokenDep
from shared.registry import ModelNotFound, PromotedPointer, PromotionRefused, model_key
from shared.storage import InvalidKey, ObjectNotFound

router = APIRouter(prefix="/models", tags=["models"])

MODEL_NOT_FOUND = "model not found"
ARTIFACT_NOT_FOUND = "artifact not found"
NOTHING_PROMOTED = "no model is promoted"
PROMOTION_REFUSED = "promotion refused"


@router.get("", response_model=list[ModelSummary])
def list_models(registry: RegistryDep) -> list[ModelSummary]:
    pointer = registry.promoted()
    return [
        ModelSummary(
            model_id=card.model_id, status=card.status.value, dataset=card.dataset,
            manifest_version=card.manifest_version, backbone=card.backbone, image_size=card.image_size,
            taxon_level=card.taxon_level.value, classes=len(card.classes), metrics=card.metrics,
            created_at=card.created_at, promoted=pointer is not None and pointer.model_id == card.model_id,
            spec=card.spec, openset=card.openset,
        )
        for card in registry.cards()
    ]


@router.get("/promoted", response_model=PromotedPointer)
def promoted(registry: RegistryDep) -> PromotedPointer:
    pointer = registry.promoted()
    if pointer is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOTHING_PROMOTED)
    return pointer


@router.get("/{model_id}", response_model=ModelDetail)
def get_model(model_id: IdPath, registry: RegistryDep, store: StoreDep) -> ModelDetail:
    try:
        card = registry.card(model_id)
    except ModelNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, MODEL_NOT_FOUND) from None
    pointer = registry.promoted()

    def artifact_json(name: str, default: Any) -> Any:
        if name not in card.artifacts:
            return default
        try:
            return store.get_json(model_key(model_id, name))
        except ObjectNotFound:
            return default

    return ModelDetail(
        card=card, promoted=pointer is not None and pointer.model_id == model_id,
        metrics=artifact_json("metrics.json", {}), history=artifact_json("history.json", []),
        artifact_urls={name: f"/models/{model_id}/artifacts/{name}" for name in card.artifacts},
    )


@router.get("/{model_id}/artifacts/{name:path}", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}, "image/png": {}}}})
def get_artifact(model_id: IdPath, name: str, registry: RegistryDep, store: StoreDep) -> Response:
    try:
        card = registry.card(model_id)
    except ModelNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, MODEL_NOT_FOUND) from None
    if name not in card.artifacts:
        raise HTTPException(status.HTTP_404_NOT_FOUND, ARTIFACT_NOT_FOUND)
    try:
        data = store.get_bytes(model_key(model_id, name))
    except (ObjectNotFound, InvalidKey):
        raise HTTPException(status.HTTP_404_NOT_FOUND, ARTIFACT_NOT_FOUND) from None
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(content=data, media_type=media_type)


@router.post("/{model_id}/promote", response_model=PromotedPointer)
def promote(model_id: IdPath, _: TokenDep, registry: RegistryDep) -> PromotedPointer:
    """Atomically point inference at this model (compare-and-set); only a complete model qualifies."""
    try:
        return registry.promote(model_id, by="api")
    except ModelNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, MODEL_NOT_FOUND) from None
    except PromotionRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{PROMOTION_REFUSED}: {exc}") from None
