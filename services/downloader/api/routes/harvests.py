"""``/harvests``: start a harvest (an RQ job on queue ``harvest``), watch it, cancel it, resume it."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, status
from rq.job import Job, JobStatus

from services.downloader.api.deps import DownloaderSettingsDep, ManifestsDep, RedisDep, StoreDep
from services.downloader.harvest.control import HarvestControl
from services.downloader.harvest.state import HarvestOutcome, HarvestRequest, HarvestState
from services.downloader.jobs import attempt_of, merge_job_id, shard_job_id, shard_name, submit_harvest
from services.downloader.schemas import HarvestCreate, HarvestView
from shared.auth import TokenDep
from shared.manifests import ManifestError, ManifestNotFound
from shared.queue import JobState, fetch_job
from shared.storage import ObjectStore

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/harvests", tags=["harvests"])

NOT_FOUND = "no such harvest"
NO_MANIFEST = "no such dataset or version"
FINISHED = "harvest already finished"
RUNNING = "harvest is running"
QUEUED = "harvest is already queued"
_WAITING = {JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


def _load(store: ObjectStore, harvest_id: str) -> tuple[HarvestState, HarvestRequest]:
    try:
        state = HarvestState(store, harvest_id)
    except ValueError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from exc
    if not state.exists():
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return state, state.request()


_SUMMED = ("done", "in_flight", "processing", "resumed", "ok", "failed", "skipped", "bytes", "images_per_s")
_SUMMED_BY = ("failed_by_reason", "skipped_by_reason")
_JOINED = ("domains_parked", "domains_given_up")


def harvest_progress(plan: dict[str, Any], shards: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole harvest's progress: the plan's counts (rows no shard fetches: done before, or skipped) plus
    every shard's (each counts only its own rows)."""
    total = dict(plan)
    for progress in shards:
        for name in _SUMMED:
            total[name] = total.get(name, 0) + progress.get(name, 0)
        for name in _SUMMED_BY:
            merged = dict(total.get(name, {}))
            for reason, count in progress.get(name, {}).items():
                merged[reason] = merged.get(reason, 0) + count
            total[name] = merged
        for name in _JOINED:
            total[name] = sorted({*total.get(name, []), *progress.get(name, [])})
        total["elapsed_s"] = max(total.get("elapsed_s", 0.0), progress.get("elapsed_s", 0.0))
    if shards and "total" in total:
        total["images_per_s"] = round(total["images_per_s"], 2)
        remaining = total["remaining"] = max(0, total["total"] - total["done"])
        rate = total["images_per_s"]
        total["eta_s"] = round(remaining / rate, 1) if rate > 0 and remaining else (0.0 if not remaining else None)
    return total


def _steps(redis: RedisDep, harvest_id: str, job_id: str | None, control: HarvestControl) -> tuple[
        Job | None, list[Job], Job | None, list[str]]:
    """The current attempt's jobs: plan, shards (those RQ still has), merge; and the shards' lease names."""
    if job_id is None:
        return None, [], None, []
    plan = fetch_job(redis, job_id)
    attempt = attempt_of(job_id)
    count = control.shards(attempt)
    shards = [job for job in (fetch_job(redis, shard_job_id(harvest_id, attempt, n)) for n in range(count))
              if job is not None]
    return plan, shards, fetch_job(redis, merge_job_id(harvest_id, attempt)), [
        shard_name(attempt, n) for n in range(count)]


def _young(job: Job, lease_ttl_s: int) -> bool:
    """Started so recently that it may not hold its lease yet."""
    started = job.started_at.replace(tzinfo=UTC) if job.started_at and not job.started_at.tzinfo else job.started_at
    return started is not None and (datetime.now(UTC) - started).total_seconds() < lease_ttl_s + 5


def _failure(job: Job) -> str:
    result = job.latest_result()
    lines = (result.exc_string or "").strip().splitlines() if result is not None else []
    return lines[-1][:500] if lines else "the harvest job failed"


def _view(state: HarvestState, request: HarvestRequest, redis: RedisDep, lease_ttl_s: int) -> HarvestView:
    control = HarvestControl(redis, request.id)
    view = HarvestView(id=request.id, state=JobState.queued, dataset=request.dataset, version=request.version,
                       options=request.options, job_id=control.job_id())
    plan, shards, merge, names = _steps(redis, request.id, view.job_id, control)
    if plan is not None:
        merged = dict(merge.meta.get("progress", {})) if merge is not None else {}
        view.progress = merged or harvest_progress(dict(plan.meta.get("progress", {})),
                                                   [dict(job.meta.get("progress", {})) for job in shards])
    outcome = state.outcome()
    if outcome is not None:
        return _finished(view, outcome)
    if plan is None:
        view.state = JobState.interrupted
        return view
    jobs = [plan, *shards, *([merge] if merge is not None else [])]
    statuses = [job.get_status() for job in jobs]
    failed = [job for job in (plan, merge) if job is not None and job.get_status(refresh=False) == JobStatus.FAILED]
    if failed:
        view.state = JobState.failed
        view.error = _failure(failed[0])
    elif JobStatus.STARTED in statuses:
        started = [job for job, status in zip(jobs, statuses, strict=True) if status == JobStatus.STARTED]
        if not control.leased(names) and not any(_young(job, lease_ttl_s) for job in started):
            view.state = JobState.interrupted  # its worker died: POST /harvests/{id}/resume, or RQ retries it
        else:
            view.state = JobState.cancelling if control.cancel_requested() else JobState.running
    elif all(status in _WAITING for status in statuses):
        view.state = JobState.queued
    elif all(status in (JobStatus.STOPPED, JobStatus.CANCELED) for status in statuses):
        view.state = JobState.cancelled
    elif merge is None and plan.get_status(refresh=False) == JobStatus.FINISHED:
        view.state = JobState.interrupted  # planned, but its jobs are gone (expired from Redis)
    else:
        view.state = JobState.cancelling if control.cancel_requested() else JobState.running
    return view


def _finished(view: HarvestView, outcome: HarvestOutcome) -> HarvestView:
    view.state = outcome.state
    view.manifest_version = outcome.manifest_version
    view.progress = {**view.progress, **outcome.counts, "state": outcome.state.value}
    return view


# Answers besides 2xx/422, documented so generated clients (and the fuzzer) know them.
HARVEST_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such dataset, version or harvest"},
    409: {"description": "the harvest is not in a state that allows this"},
}


@router.post("", response_model=HarvestView, status_code=status.HTTP_202_ACCEPTED, responses=HARVEST_ERRORS)
def create(body: HarvestCreate, _: TokenDep, store: StoreDep, manifests: ManifestsDep, redis: RedisDep,
           settings: DownloaderSettingsDep) -> HarvestView:
    """Harvest the images of a manifest version into object storage; returns at once with the harvest id."""
    try:
        version = body.version or manifests.latest_version(body.dataset)
        manifests.info(body.dataset, version)
    except (ManifestError, ManifestNotFound) as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_MANIFEST) from exc
    request = HarvestRequest(id=f"h-{uuid.uuid4().hex[:16]}", dataset=body.dataset, version=version,
                             options=body.options, created_at=datetime.now(UTC))
    state = HarvestState(store, request.id)
    state.save_request(request)
    submit_harvest(redis, request, settings.job_retries)
    logger.info("harvest %s queued: %s v%d", request.id, request.dataset, version)
    return _view(state, request, redis, settings.lease_ttl_s)


@router.get("/{harvest_id}", response_model=HarvestView, responses=HARVEST_ERRORS)
def show(harvest_id: str, store: StoreDep, redis: RedisDep, settings: DownloaderSettingsDep) -> HarvestView:
    """State, counts (ok; failed and skipped by reason), throughput and ETA."""
    state, request = _load(store, harvest_id)
    return _view(state, request, redis, settings.lease_ttl_s)


@router.delete("/{harvest_id}", response_model=HarvestView, status_code=status.HTTP_202_ACCEPTED,
               responses=HARVEST_ERRORS)
def cancel(harvest_id: str, _: TokenDep, store: StoreDep, redis: RedisDep,
           settings: DownloaderSettingsDep) -> HarvestView:
    """Cancel: a queued harvest is dropped; a running one stops after checkpointing what it stored."""
    state, request = _load(store, harvest_id)
    view = _view(state, request, redis, settings.lease_ttl_s)
    if view.state in (JobState.completed, JobState.cancelled):
        raise HTTPException(status.HTTP_409_CONFLICT, FINISHED)
    control = HarvestControl(redis, harvest_id)
    control.request_cancel()
    if view.state in (JobState.queued, JobState.interrupted, JobState.failed):
        plan, shards, merge, names = _steps(redis, harvest_id, view.job_id, control)
        for job in (plan, *shards, merge):
            try:
                if job is not None and job.get_status() in _WAITING:
                    job.cancel()
            except Exception as exc:  # noqa: BLE001 - not cancellable any more
                logger.info("harvest %s: job %s not cancelled: %s", harvest_id, job.id if job else None, exc)
        if not control.leased(names):
            state.save_outcome(HarvestOutcome(state=JobState.cancelled, dataset=request.dataset,
                                              parent_version=request.version, counts=view.progress,
                                              finished_at=datetime.now(UTC)))
    return _view(state, request, redis, settings.lease_ttl_s)


@router.post("/{harvest_id}/resume", response_model=HarvestView, status_code=status.HTTP_202_ACCEPTED,
             responses=HARVEST_ERRORS)
def resume(harvest_id: str, _: TokenDep, store: StoreDep, redis: RedisDep,
           settings: DownloaderSettingsDep) -> HarvestView:
    """Start an interrupted harvest again: rows already stored are not fetched again."""
    state, request = _load(store, harvest_id)
    view = _view(state, request, redis, settings.lease_ttl_s)
    if view.state in (JobState.completed, JobState.cancelled):
        raise HTTPException(status.HTTP_409_CONFLICT, FINISHED)
    if view.state in (JobState.running, JobState.cancelling):
        raise HTTPException(status.HTTP_409_CONFLICT, RUNNING)
    if view.state is JobState.queued:
        raise HTTPException(status.HTTP_409_CONFLICT, QUEUED)
    submit_harvest(redis, request, settings.job_retries)
    return _view(state, request, redis, settings.lease_ttl_s)
