"""Curations: an RQ job turns a manifest version into a curated version plus a report."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from services.curator.api.deps import CuratorSettingsDep, ManifestsDep, RedisDep, StoreDep, resolve_version
from services.curator.curation import (
    CURATION_ID,
    CurationReport,
    CurationRules,
    CurationRun,
    load_run,
    run_curation,
    save_run,
)
from shared.auth import TokenDep
from shared.queue import JobState, QueueName, get_queue

router = APIRouter(prefix="/curations", tags=["curations"])

CURATION_NOT_FOUND = "curation not found"


class CurationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str
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


@router.post("", response_model=CurationStatus, status_code=status.HTTP_202_ACCEPTED)
def create_curation(body: CurationRequest, store: StoreDep, manifests: ManifestsDep, redis: RedisDep,
                    defaults: CuratorSettingsDep, _: TokenDep) -> CurationStatus:
    version = resolve_version(manifests, body.dataset, body.version)
    rules = body.rules or CurationRules(irrelevant_threshold=defaults.irrelevant_threshold,
                                        min_side=defaults.min_side, duplicate_distance=defaults.duplicate_distance)
    run = CurationRun(id=uuid.uuid4().hex[:16], dataset=body.dataset, version=version, rules=rules,
                      state=JobState.queued, created_at=datetime.now(UTC))
    save_run(store, run)  # before enqueueing: the job reads its request from here
    get_queue(QueueName.curate, redis).enqueue(run_curation, run.id, job_id=run.id, job_timeout=6 * 3600,
                                               result_ttl=7 * 86400, failure_ttl=7 * 86400)
    return _status(run, None)


@router.get("/{curation_id}", response_model=CurationStatus)
def get_curation(curation_id: str, store: StoreDep, redis: RedisDep) -> CurationStatus:
    if not CURATION_ID.match(curation_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, CURATION_NOT_FOUND)
    run = load_run(store, curation_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, CURATION_NOT_FOUND)
    try:
        job: Job | None = Job.fetch(curation_id, connection=redis)
    except NoSuchJobError:
        job = None
    return _status(run, job)


def _status(run: CurationRun, job: Job | None) -> CurationStatus:
    job_status = job.get_status(refresh=False) if job is not None else None
    state, error = run.state, run.error
    # The job died without updating its record (a killed worker): say so instead of "running" forever.
    if job_status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED) and state is not JobState.completed:
        state = JobState.failed
        error = error or f"job {job_status}"
    return CurationStatus(
        id=run.id, dataset=run.dataset, version=run.version, rules=run.rules, state=state,
        job_status=str(job_status.value) if job_status is not None else None,
        progress=dict(job.meta.get("progress", {})) if job is not None else {},
        output_version=run.output_version, report=run.report, error=error,
    )
