"""The trainer's API: submit a training job and follow it; list the registry's models and promote one."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter

from shared.clients.base import ServiceClient, segment
from shared.queue import JobState
from shared.registry import ModelStatus, PromotedPointer
from shared.training import TrainingJobSpec


class JobAccepted(BaseModel):
    job_id: str
    model_id: str = Field(description="the model it trains (the job's id)")
    manifest_version: int = Field(description="the version the job trains on, pinned when it was submitted")
    classes: list[str]


class TrainingJob(BaseModel):
    job_id: str
    state: JobState
    epoch: int = 0
    epochs: int | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="test metrics once complete")
    error: str | None = None
    log_tail: list[str] = Field(default_factory=list)


class ModelSummary(BaseModel):
    model_id: str
    status: ModelStatus
    promoted: bool
    metrics: dict[str, float]
    created_at: datetime


_ACCEPTED = TypeAdapter(JobAccepted)
_JOB = TypeAdapter(TrainingJob)
_MODELS = TypeAdapter(list[ModelSummary])
_POINTER = TypeAdapter(PromotedPointer)


class TrainerClient(ServiceClient):
    service = "trainer"

    def submit_job(self, spec: TrainingJobSpec | Mapping[str, Any]) -> JobAccepted:
        """Queue a training job; the answer names its model, the pinned manifest version, classes and splits."""
        body = spec.model_dump(mode="json") if isinstance(spec, TrainingJobSpec) else dict(spec)
        return self._call("POST", "/jobs", _ACCEPTED, json=body)

    def job(self, job_id: str) -> TrainingJob:
        return self._call("GET", f"/jobs/{segment(job_id)}", _JOB)

    def cancel_job(self, job_id: str) -> TrainingJob:
        return self._call("DELETE", f"/jobs/{segment(job_id)}", _JOB)

    def models(self) -> list[ModelSummary]:
        return self._call("GET", "/models", _MODELS)

    def promote(self, model_id: str) -> PromotedPointer:
        """Point inference at this model; only a complete model qualifies."""
        return self._call("POST", f"/models/{segment(model_id)}/promote", _POINTER)
