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
    split_sizes: dict[str, int] = Field(default_factory=dict)


class TrainingJob(BaseModel):
    job_id: str
    state: JobState
    stage: str | None = None
    epoch: int = 0
    epochs: int | None = None
    history: list[dict[str, Any]] = Field(default_factory=list, description="per-epoch metrics")
    eta_seconds: float | None = None
    best_val_accuracy: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="test metrics once complete")
    error: str | None = None
    log_tail: list[str] = Field(default_factory=list)


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
    status: ModelStatus
    promoted: bool
    metrics: dict[str, float]
    created_at: datetime
    dataset: str | None = None
    manifest_version: int | None = None
    backbone: str | None = None
    image_size: int | None = None
    classes: int | None = None


class ModelDetail(BaseModel):
    card: dict[str, Any]
    promoted: bool
    metrics: dict[str, Any] = Field(default_factory=dict)
    history: list[dict[str, Any]] = Field(default_factory=list)
    artifact_urls: dict[str, str] = Field(default_factory=dict)


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
    state: JobState
    epoch: int = 0
    best_val_accuracy: float | None = None
    test_top1: float | None = None


class Sweep(BaseModel):
    sweep_id: str
    name: str | None = None
    rows: list[SweepRow]
    best_job_id: str | None = None


class SweepSummary(BaseModel):
    sweep_id: str
    name: str | None = None
    created_at: datetime
    jobs: int
    states: dict[str, int] = Field(default_factory=dict)
    best_job_id: str | None = None
    best_val_accuracy: float | None = None


class Preset(BaseModel):
    name: str
    description: str


_ACCEPTED = TypeAdapter(JobAccepted)
_JOB = TypeAdapter(TrainingJob)
_JOBS = TypeAdapter(list[JobSummary])
_MODELS = TypeAdapter(list[ModelSummary])
_MODEL = TypeAdapter(ModelDetail)
_POINTER = TypeAdapter(PromotedPointer)
_SWEEP_ACCEPTED = TypeAdapter(SweepAccepted)
_SWEEP = TypeAdapter(Sweep)
_SWEEPS = TypeAdapter(list[SweepSummary])
_PRESETS = TypeAdapter(list[Preset])
_SPEC = TypeAdapter(dict[str, Any])


class TrainerClient(ServiceClient):
    service = "trainer"

    def submit_job(self, spec: TrainingJobSpec | Mapping[str, Any]) -> JobAccepted:
        """Queue a training job; the answer names its model, the pinned manifest version, classes and splits."""
        body = spec.model_dump(mode="json") if isinstance(spec, TrainingJobSpec) else dict(spec)
        return self._call("POST", "/jobs", _ACCEPTED, json=body)

    def jobs(self) -> list[JobSummary]:
        return self._call("GET", "/jobs", _JOBS)

    def submit_sweep(self, sweep: Mapping[str, Any]) -> SweepAccepted:
        """Queue one job per combination of the grid's values (all or none)."""
        return self._call("POST", "/sweeps", _SWEEP_ACCEPTED, json=dict(sweep))

    def sweep(self, sweep_id: str) -> Sweep:
        return self._call("GET", f"/sweeps/{segment(sweep_id)}", _SWEEP)

    def sweeps(self, limit: int = 50) -> list[SweepSummary]:
        """The newest sweeps first, with their jobs' states and best run."""
        return self._call("GET", "/sweeps", _SWEEPS, params={"limit": limit})

    def presets(self) -> list[Preset]:
        return self._call("GET", "/presets", _PRESETS)

    def preset(self, name: str, dataset: str, manifest_version: int | None = None) -> dict[str, Any]:
        """A preset as a full job spec for ``dataset``, to edit and submit."""
        params: dict[str, Any] = {"dataset": dataset}
        if manifest_version is not None:
            params["manifest_version"] = manifest_version
        return self._call("GET", f"/presets/{segment(name)}", _SPEC, params=params)

    def requeue(self, job_id: str, force: bool = False) -> TrainingJob:
        """Run a failed or cancelled job again from its last checkpoint."""
        return self._call("POST", f"/jobs/{segment(job_id)}/requeue", _JOB, params={"force": force})

    def artifact(self, model_id: str, name: str) -> bytes:
        """One file of a model (``model.keras``, ``labels.json``, ``curves.png``, ...) as bytes."""
        path = f"/models/{segment(model_id)}/artifacts/{segment(name, safe='/')}"
        response = self._send("GET", path)
        if response.status_code >= 400:
            raise self._failure("GET", path, response)
        return response.content

    def model(self, model_id: str) -> ModelDetail:
        return self._call("GET", f"/models/{segment(model_id)}", _MODEL)

    def job(self, job_id: str) -> TrainingJob:
        return self._call("GET", f"/jobs/{segment(job_id)}", _JOB)

    def cancel_job(self, job_id: str) -> TrainingJob:
        return self._call("DELETE", f"/jobs/{segment(job_id)}", _JOB)

    def models(self) -> list[ModelSummary]:
        return self._call("GET", "/models", _MODELS)

    def promote(self, model_id: str) -> PromotedPointer:
        """Point inference at this model; only a complete model qualifies."""
        return self._call("POST", f"/models/{segment(model_id)}/promote", _POINTER)
