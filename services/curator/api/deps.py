"""Dependencies of the curator's routes, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, status

from services.curator.core.config import CuratorSettings, get_curator_settings
from shared.api import ManifestsDep, RedisDep, SettingsDep, StoreDep
from shared.manifests import ManifestNotFound, ManifestStore

DATASET_NOT_FOUND = "dataset not found"
VERSION_NOT_FOUND = "manifest version not found"


CuratorSettingsDep = Annotated[CuratorSettings, Depends(get_curator_settings)]


def resolve_version(manifests: ManifestStore, dataset: str, version: int | None) -> int:
    """The version to work on (latest if None); 404/422 with fixed details otherwise."""
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
    "CuratorSettingsDep", "DATASET_NOT_FOUND", "ManifestsDep",
    "RedisDep", "SettingsDep", "StoreDep", "VERSION_NOT_FOUND", "resolve_version",
]
