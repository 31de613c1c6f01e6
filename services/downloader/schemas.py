"""Request and response bodies of the downloader API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.downloader.harvest.options import HarvestOptions
from shared.queue import JobState
from shared.schemas import DatasetName, ManifestInfo


class ImportError_(BaseModel):
    """Where a source file is wrong: what a person has to fix."""

    file: str
    line: int | None = None
    column: str | int | None = None
    message: str


class DatasetSummary(BaseModel):
    dataset: str
    latest_version: int
    versions: int


class ManifestDetail(BaseModel):
    info: ManifestInfo
    summary: dict[str, Any]


class HarvestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: DatasetName
    version: int | None = Field(default=None, ge=1, description="default: the dataset's latest version")
    options: HarvestOptions = Field(default_factory=HarvestOptions)


class HarvestView(BaseModel):
    id: str
    state: JobState = Field(description="interrupted: its worker died (resume it); cancelling: stopping after a "
                            "checkpoint; completed, cancelled and failed are final")
    dataset: str
    version: int
    options: HarvestOptions
    job_id: str | None = None
    manifest_version: int | None = Field(default=None, description="the version the harvest wrote, when completed")
    progress: dict[str, Any] = Field(default_factory=dict,
                                     description="counts (ok, failed and skipped by reason), images_per_s, eta_s")
    error: str | None = None
