"""Training jobs: submit, list, inspect (progress, metrics, ETA, log tail), cancel, requeue."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, status
from redis import Redis

from services.trainer import jobs
from services.trainer.api.deps import ManifestsDep, RedisDep, RegistryDep, TrainerSettingsDep
from services.trainer.schemas import IdPath, JobAccepted, JobOut, JobSummary
from services.trainer.submission import pin_and_plan
from shared.auth import TokenDep
from shared.queue import JobState, job_state
from shared.registry import ModelNotFound, ModelRegistry, ModelStatus
from shared.training import TrainingJobSpec

router = APIRouter(prefix="/jobs", tags=["jobs"])

JOB_NOT_FOUND = "job not found"
JOB_CONFLICT = "job cannot do that now"


def job_view(connection: Redis, registry: ModelRegistry, job_id: str, tail: int) -> JobOut:
    """The job from Redis, or (once Redis has forgotten it) from its model card."""
    try:
        job = jobs.fetch(connection, job_id)
    except jobs.JobNotFound:
        try:
            card = registry.card(job_id)
        except ModelNotFound:
            raise HTTPException(status.HTTP_404_NOT_FOUND, JOB_NOT_FOUND) from None
        state = {ModelStatus.complete: JobState.completed, ModelStatus.failed: JobState.failed}.get(
            card.status, JobState.running)
        return JobOut(job_id=job_id, model_id=job_id, state=state, metrics=card.metrics, error=card.error,
                      spec=card.spec, log_tail=jobs.log_tail(connection, job_id, tail))
    progress: dict[str, Any] = dict(job.meta.get("progress", {}))
    state = job_state(job)
    error = progress.get("error")
    if state is JobState.failed and not error:
        result = job.latest_result()
        error = (result.exc_string or "").strip().splitlines()[-1] if result and result.exc_string else "failed"
    return JobOut(
        job_id=job.id, model_id=job.id, state=state, stage=progress.get("stage"),
        epoch=progress.get("epoch", 0), epochs=progress.get("epochs"), history=progress.get("history", []),
        eta_seconds=progress.get("eta_seconds") if state is JobState.running else None,
        best_val_accuracy=progress.get("best_val_accuracy"), resumed_from_epoch=progress.get("resumed_from_epoch"),
        metrics=progress.get("metrics", {}), error=error, log_tail=jobs.log_tail(connection, job.id, tail),
        spec=job.meta.get("spec", {}), enqueued_at=job.enqueued_at, started_at=job.started_at,
        ended_at=job.ended_at,
    )


@router.post("", response_model=JobAccepted, status_code=status.HTTP_202_ACCEPTED)
def submit(spec: TrainingJobSpec, _: TokenDep, manifests: ManifestsDep, connection: RedisDep,
           trainer: TrainerSettingsDep) -> JobAccepted:
    pinned, plan = pin_and_plan(manifests, spec)
    job = jobs.submit_training(connection, pinned, trainer.job_timeout_seconds)
    assert pinned.data.manifest_version is not None
    return JobAccepted(job_id=job.id, model_id=job.id, state=JobState.queued,
                       manifest_version=pinned.data.manifest_version, classes=plan.class_names,
                       split_sizes={split: len(examples) for split, examples in plan.splits.items()})


@router.get("", response_model=list[JobSummary])
def list_jobs(connection: RedisDep) -> list[JobSummary]:
    summaries = []
    for job_id in jobs.train_job_ids(connection):
        try:
            job = jobs.fetch(connection, job_id)
        except jobs.JobNotFound:
            continue
        progress = job.meta.get("progress", {})
        summaries.append(JobSummary(
            job_id=job.id, state=job_state(job), stage=progress.get("stage"), epoch=progress.get("epoch", 0),
            epochs=progress.get("epochs"), name=job.meta.get("spec", {}).get("name"), enqueued_at=job.enqueued_at))
    return sorted(summaries, key=lambda s: s.job_id, reverse=True)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: IdPath, connection: RedisDep, registry: RegistryDep, trainer: TrainerSettingsDep) -> JobOut:
    return job_view(connection, registry, job_id, trainer.log_tail_lines)


@router.delete("/{job_id}", response_model=JobOut)
def cancel_job(job_id: IdPath, _: TokenDep, connection: RedisDep, registry: RegistryDep,
               trainer: TrainerSettingsDep) -> JobOut:
    try:
        jobs.cancel(connection, job_id)
    except jobs.JobNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, JOB_NOT_FOUND) from None
    except jobs.JobConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{JOB_CONFLICT}: {exc}") from None
    try:
        card = registry.card(job_id)
        if card.status is ModelStatus.training:
            registry.save_card(card.model_copy(update={"status": ModelStatus.failed, "error": "canceled"}))
    except ModelNotFound:
        pass  # canceled before it started: no card yet
    return job_view(connection, registry, job_id, trainer.log_tail_lines)


@router.post("/{job_id}/requeue", response_model=JobOut, status_code=status.HTTP_202_ACCEPTED)
def requeue_job(
    job_id: IdPath, _: TokenDep, connection: RedisDep, registry: RegistryDep, trainer: TrainerSettingsDep,
    force: bool = Query(default=False, description="also requeue a job still marked running (its worker died)"),
) -> JobOut:
    """Run a failed (or orphaned) job again: it resumes after its last checkpointed epoch."""
    try:
        jobs.requeue(connection, job_id, force=force)
    except jobs.JobNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, JOB_NOT_FOUND) from None
    except jobs.JobConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{JOB_CONFLICT}: {exc}") from None
    return job_view(connection, registry, job_id, trainer.log_tail_lines)
