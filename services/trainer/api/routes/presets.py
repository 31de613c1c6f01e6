"""Named training presets: GET /presets/{name}?dataset=... returns a full spec to edit and POST to /jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from services.trainer.presets import PRESETS
from services.trainer.schemas import PresetOut
from shared.schemas import DatasetName
from shared.training import TrainingJobSpec

router = APIRouter(prefix="/presets", tags=["presets"])

PRESET_NOT_FOUND = "preset not found"


@router.get("", response_model=list[PresetOut])
def list_presets() -> list[PresetOut]:
    return [PresetOut(name=name, description=(factory.__doc__ or "").strip().splitlines()[0])
            for name, factory in PRESETS.items()]


@router.get("/{name}", response_model=TrainingJobSpec)
def get_preset(name: str, dataset: Annotated[DatasetName, Query()],
               manifest_version: int | None = Query(default=None, ge=1)) -> TrainingJobSpec:
    factory = PRESETS.get(name)
    if factory is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, PRESET_NOT_FOUND)
    return factory(dataset, manifest_version)
