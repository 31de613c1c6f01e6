"""Dependencies of the curator's routes, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, status
from pydantic import BaseModel

from services.curator.core.config import CuratorSettings, get_curator_settings
from shared.api import ManifestsDep, RedisDep, SettingsDep, StoreDep
from shared.manifests import ManifestError, ManifestNotFound, ManifestStore, validate_dataset

DATASET_NOT_FOUND = "dataset not found"
VERSION_NOT_FOUND = "manifest version not found"
INVALID_DATASET = "invalid dataset name: use 1-64 of a-z 0-9 . _ - starting with a letter or digit"


class ErrorMessage(BaseModel):
    detail: str


# Refusals carry one fixed message; 422 stays FastAPI's own (a list of field errors).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorMessage} for code in (400, 401, 403, 404, 409)
}

CuratorSettingsDep = Annotated[CuratorSettings, Depends(get_curator_settings)]


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

# the shared dependencies are re-exported: routes import every dependency from here
__all__ = [
    "CuratorSettingsDep", "DATASET_NOT_FOUND", "ERROR_RESPONSES", "ErrorMessage", "INVALID_DATASET", "ManifestsDep",
    "RedisDep", "SettingsDep", "StoreDep", "VERSION_NOT_FOUND", "resolve_version",
]
