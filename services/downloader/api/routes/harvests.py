"""``/harvests``: start a harvest (an RQ job on queue ``harvest``), watch it, cancel it, resume it."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, status
from rq.job import JobStatus

from services.downloader.api.deps import DownloaderSettingsDep, ManifestsDep, RedisDep, StoreDep
from services.downloader.harvest.control import HarvestControl
from services.downloader.harvest.state import HarvestOutcome, HarvestRequest, HarvestState
from services.downloader.jobs import submit_harvest
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


def _view(state: HarvestState, request: HarvestRequest, redis: RedisDep, lease_ttl_s: int) -> HarvestView:
    control = HarvestControl(redis, request.id)
    view = HarvestView(id=request.id, state=JobState.queued, dataset=request.dataset, version=request.version,
                       options=request.options, job_id=control.job_id())
    job = fetch_job(redis, view.job_id) if view.job_id else None
    if job is not None:
        view.progress = dict(job.meta.get("progress", {}))
    outcome = state.outcome()
    if outcome is not None:
        return _finished(view, outcome)
    if job is None:
        view.state = JobState.interrupted
        return view
    job_status = job.get_status()
    if job_status in _WAITING:
        view.state = JobState.queued
    elif job_status == JobStatus.STARTED:
        started = job.started_at.replace(tzinfo=UTC) if job.started_at and not job.started_at.tzinfo else job.started_at
        young = started is not None and (datetime.now(UTC) - started).total_seconds() < lease_ttl_s + 5
        if not control.leased() and not young:
            view.state = JobState.interrupted  # its worker died: POST /harvests/{id}/resume, or RQ retries it
        else:
            view.state = JobState.cancelling if control.cancel_requested() else JobState.running
    elif job_status in (JobStatus.STOPPED, JobStatus.CANCELED):
        view.state = JobState.cancelled
    elif job_status == JobStatus.FAILED:
        view.state = JobState.failed
        result = job.latest_result()
        lines = (result.exc_string or "").strip().splitlines() if result is not None else []
        view.error = lines[-1][:500] if lines else "the harvest job failed"
    else:
        view.state = JobState.running
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
        if view.job_id:
            job = fetch_job(redis, view.job_id)
            try:
                if job is not None:
                    job.cancel()
            except Exception as exc:  # noqa: BLE001 - not cancellable any more
                logger.info("harvest %s: job %s not cancelled: %s", harvest_id, view.job_id, exc)
        if not control.leased():
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
