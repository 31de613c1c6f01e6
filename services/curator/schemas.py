"""Request and response bodies of the curator API."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.curator.curation import CurationReport, CurationRules
from services.curator.domain_scores import DomainRules, DomainScore
from services.curator.filter.learned import PROBE_L2
from services.curator.labels import Label
from shared.queue import JobState
from shared.schemas import DatasetName


class ImageLabel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_id: str = Field(min_length=1, max_length=200)
    label: Label


class LabelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: DatasetName
    version: int | None = Field(default=None, ge=1, description="the version the images are in (default latest)")
    labels: list[ImageLabel] = Field(min_length=1, max_length=5000)
    actor: str = Field(default="api", min_length=1, max_length=100)


class LabelResult(BaseModel):
    stored: int
    total_labelled: int


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: DatasetName
    threshold: float = Field(default=0.5, ge=0, le=1, description="irrelevant above: for the held-out figures")
    l2: float = Field(default=PROBE_L2, gt=0, le=100, description="the probe's L2 penalty (pulls it to zero-shot)")


class DomainReport(BaseModel):
    dataset: str
    version: int
    rows: int
    rules: DomainRules
    domains: list[DomainScore]


class SampleFormat(StrEnum):
    json = "json"
    png = "png"
    html = "html"


class CurationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: DatasetName
    version: int | None = Field(default=None, ge=1, description="default: the latest version")
    rules: CurationRules | None = None


class CurationStatus(BaseModel):
    id: str
    dataset: str
    version: int
    rules: CurationRules
    state: JobState
    job_status: str | None
    progress: dict[str, Any]
    output_version: int | None
    report: CurationReport | None
    error: str | None


class BlacklistPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)
    actor: str = Field(default="api", min_length=1, max_length=100, description="who makes the change")
