"""Curations: an RQ job turns a manifest version into a curated version plus a report."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, status
from rq.job import Job, JobStatus

from services.curator.api.deps import CuratorSettingsDep, ManifestsDep, RedisDep, StoreDep, resolve_version
from services.curator.curation import (
    CURATION_ID,
    CurationRules,
    CurationRun,
    load_run,
)
from services.curator.jobs import submit_curation
from services.curator.schemas import CurationRequest, CurationStatus
from shared.auth import TokenDep
from shared.queue import JobState, fetch_job

router = APIRouter(prefix="/curations", tags=["curations"])

CURATION_NOT_FOUND = "curation not found"


@router.post("", response_model=CurationStatus, status_code=status.HTTP_202_ACCEPTED)
def create_curation(body: CurationRequest, store: StoreDep, manifests: ManifestsDep, redis: RedisDep,
                    defaults: CuratorSettingsDep, _: TokenDep) -> CurationStatus:
    version = resolve_version(manifests, body.dataset, body.version)
    rules = body.rules or CurationRules(irrelevant_threshold=defaults.irrelevant_threshold,
                                        min_side=defaults.min_side, duplicate_distance=defaults.duplicate_distance)
    run = CurationRun(id=uuid.uuid4().hex[:16], dataset=body.dataset, version=version, rules=rules,
                      state=JobState.queued, created_at=datetime.now(UTC))
    submit_curation(redis, store, run, defaults.curation_timeout_s)
    return _status(run, None)


@router.get("/{curation_id}", response_model=CurationStatus)
def get_curation(curation_id: str, store: StoreDep, redis: RedisDep) -> CurationStatus:
    if not CURATION_ID.match(curation_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, CURATION_NOT_FOUND)
    run = load_run(store, curation_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, CURATION_NOT_FOUND)
    return _status(run, fetch_job(redis, curation_id))


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
