"""Dependencies of the curator's routes, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from pydantic import BaseModel
from redis import Redis

from services.curator.core.config import CuratorSettings, get_curator_settings
from shared.manifests import ManifestError, ManifestNotFound, ManifestStore, validate_dataset
from shared.queue import redis_connection
from shared.settings import Settings, get_settings
from shared.storage import ObjectStore

DATASET_NOT_FOUND = "dataset not found"
VERSION_NOT_FOUND = "manifest version not found"
INVALID_DATASET = "invalid dataset name: use 1-64 of a-z 0-9 . _ - starting with a letter or digit"



class ErrorMessage(BaseModel):
    detail: str


# Refusals carry one fixed message; 422 stays FastAPI's own (a list of field errors).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorMessage} for code in (400, 401, 403, 404, 409)
}

SettingsDep = Annotated[Settings, Depends(get_settings)]
CuratorSettingsDep = Annotated[CuratorSettings, Depends(get_curator_settings)]


def get_store(request: Request, settings: SettingsDep) -> ObjectStore:
    """One ObjectStore per storage target, created on first use and kept on the app (lifespan owns the cache)."""
    stores: dict[tuple[str, str, str], ObjectStore] = request.app.state.stores
    key = (settings.s3_endpoint, settings.s3_bucket, settings.s3_access_key)
    if key not in stores:
        store = ObjectStore.from_settings(settings)
        store.ensure_bucket()
        stores[key] = store
    return stores[key]


def get_redis(request: Request, settings: SettingsDep) -> Redis:
    connections: dict[str, Redis] = request.app.state.redis
    if settings.redis_url not in connections:
        connections[settings.redis_url] = redis_connection(settings)
    return connections[settings.redis_url]


StoreDep = Annotated[ObjectStore, Depends(get_store)]
RedisDep = Annotated[Redis, Depends(get_redis)]


def get_manifests(store: StoreDep) -> ManifestStore:
    return ManifestStore(store)


ManifestsDep = Annotated[ManifestStore, Depends(get_manifests)]


def resolve_version(manifests: ManifestStore, dataset: str, version: int | None) -> int:
    """The version to work on (latest if None); 404/422 with fixed details otherwise."""
    try:
        validate_dataset(dataset)
    except ManifestError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, INVALID_DATASET) from None
    try:
        latest = manifests.latest_version(dataset)
    except ManifestNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, DATASET_NOT_FOUND) from None
    if version is None:
        return latest
    try:
        manifests.info(dataset, version)
    except ManifestNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, VERSION_NOT_FOUND) from None
    return version
