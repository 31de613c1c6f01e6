"""Response bodies of the trainer API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, Field

from shared.openset import OpenSetCard
from shared.queue import JobState
from shared.registry import MODEL_ID, ModelCard

# Job, model and sweep ids share the registry's model id format (a job's id is its model's id).
IdPath = Annotated[str, Path(pattern=MODEL_ID.pattern, description="a job, model or sweep id")]


class JobAccepted(BaseModel):
    job_id: str
    model_id: str
    state: JobState
    manifest_version: int
    classes: list[str]
    split_sizes: dict[str, int]


class JobOut(BaseModel):
    job_id: str
    model_id: str
    state: JobState
    stage: str | None = None
    epoch: int = 0
    epochs: int | None = None
    history: list[dict[str, Any]] = Field(default_factory=list, description="per-epoch metrics")
    eta_seconds: float | None = None
    best_val_accuracy: float | None = None
    resumed_from_epoch: int | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="test metrics once complete")
    error: str | None = None
    log_tail: list[str] = Field(default_factory=list)
    spec: dict[str, Any] = Field(default_factory=dict)
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


class JobSummary(BaseModel):
    job_id: str
    state: JobState
    stage: str | None = None
    epoch: int = 0
    epochs: int | None = None
    name: str | None = None
    enqueued_at: datetime | None = None


class ModelSummary(BaseModel):
    model_id: str
    status: str
    dataset: str
    manifest_version: int
    backbone: str
    image_size: int
    taxon_level: str
    classes: int
    metrics: dict[str, float]
    created_at: datetime
    promoted: bool
    spec: dict[str, Any]
    openset: OpenSetCard | None = Field(default=None, description="open-set and calibration fit (validation split)")


class ModelDetail(BaseModel):
    card: ModelCard
    promoted: bool
    metrics: dict[str, Any] = Field(default_factory=dict, description="validation figures (val_*) used to choose, "
                                    "test figures (top1/top3/top5/macro_f1, per class, confusion) only reported")
    history: list[dict[str, Any]] = Field(default_factory=list)
    artifact_urls: dict[str, str] = Field(default_factory=dict, description="artifact name -> API path")


class SweepJob(BaseModel):
    job_id: str
    overrides: dict[str, Any]


class SweepAccepted(BaseModel):
    sweep_id: str
    manifest_version: int
    jobs: list[SweepJob]


class SweepRow(BaseModel):
    job_id: str
    label: str
    overrides: dict[str, Any]
    state: JobState
    epoch: int = 0
    best_val_accuracy: float | None = None
    test_top1: float | None = None
    test_top3: float | None = None
    macro_f1: float | None = None


class SweepOut(BaseModel):
    sweep_id: str
    name: str | None = None
    created_at: datetime
    grid: dict[str, list[Any]]
    rows: list[SweepRow]
    missing_jobs: int = Field(default=0, description="jobs whose record expired without leaving a model")
    best_job_id: str | None = Field(default=None, description="highest validation accuracy among complete jobs")
    plot_url: str


class SweepSummary(BaseModel):
    sweep_id: str
    name: str | None = None
    created_at: datetime
    grid: dict[str, list[Any]]
    jobs: int
    states: dict[str, int] = Field(description="how many of its jobs are in each state")
    best_job_id: str | None = None
    best_val_accuracy: float | None = None


class PresetOut(BaseModel):
    name: str
    description: str
