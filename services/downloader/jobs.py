"""The downloader's long job on the RQ queue ``harvest``: ``submit_harvest`` (routes) and ``run_harvest`` (the
worker). A harvest has no time limit: it checkpoints, and a retry or a resume continues where it stopped."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from typing import Any

from redis import Redis
from rq.job import Job

from services.downloader.core.config import DownloaderSettings, get_downloader_settings
from services.downloader.harvest.blacklist import load_blacklist
from services.downloader.harvest.control import HarvestControl
from services.downloader.harvest.engine import Harvester, HarvestHooks
from services.downloader.harvest.loop import run_event_loop
from services.downloader.harvest.state import HarvestRequest, HarvestState
from services.downloader.metrics import HarvestRecorder
from shared.job_metrics import JobMetrics
from shared.queue import JobState, QueueName, enqueue, redis_connection, report_progress
from shared.settings import Settings, get_settings
from shared.storage import ObjectStore

logger = logging.getLogger(__name__)


class HarvestBusy(RuntimeError):
    """Another worker holds the harvest's lease."""


KEEP_SECONDS = 7 * 24 * 3600  # a harvest job's result or failure stays readable for a week


def submit_harvest(connection: Redis, request: HarvestRequest, retries: int) -> Job:
    """Queue (another attempt at) the harvest; its control record names the job now in charge."""
    control = HarvestControl(connection, request.id)
    attempt = control.next_attempt()
    job = enqueue(connection, QueueName.harvest, run_harvest, request.id, job_id=f"{request.id}-{attempt}",
                  timeout_s=None, keep_s=KEEP_SECONDS, retries=retries,
                  description=f"harvest {request.dataset} v{request.version}")
    control.set_job(job.id)
    return job


def run_harvest(harvest_id: str) -> dict[str, Any]:
    """Run (or resume) harvest ``harvest_id`` to the end; idempotent, safe to run again after a crash."""
    return execute_harvest(harvest_id, get_settings(), get_downloader_settings())


def execute_harvest(harvest_id: str, settings: Settings, downloader: DownloaderSettings) -> dict[str, Any]:
    store = ObjectStore.from_settings(settings)
    state = HarvestState(store, harvest_id)
    finished = state.outcome()
    if finished is not None:
        return finished.model_dump(mode="json")
    connection = redis_connection(settings)
    control = HarvestControl(connection, harvest_id)
    recorder = HarvestRecorder(JobMetrics(connection))
    token = uuid.uuid4().hex
    ttl = downloader.lease_ttl_s
    deadline = time.monotonic() + 2 * ttl + 5  # a dead worker's lease runs out within ttl
    while not control.acquire(token, ttl):
        if time.monotonic() > deadline:
            raise HarvestBusy(f"harvest {harvest_id} is being run by another worker")
        time.sleep(0.5)
    stop_renewing = threading.Event()
    renewer = threading.Thread(target=_renew_lease, args=(control, token, ttl, stop_renewing),
                               name="harvest-lease", daemon=True)
    renewer.start()
    try:
        request = state.request()
        blacklist, origin = asyncio.run(load_blacklist(
            settings.curator_url, store, downloader.blacklist_cache_key, downloader.blacklist_timeout_s))
        logger.info("harvest %s: blacklist from %s (%d entries)", harvest_id, origin, len(blacklist.entries))
        hooks = HarvestHooks(
            progress=lambda progress: report_progress(**progress, blacklist=origin),
            should_cancel=control.cancel_requested,
            checkpointed=recorder.checkpointed,
        )
        try:
            outcome = run_event_loop(Harvester(store, request, downloader, blacklist, hooks).run())
        except Exception:
            recorder.ended(JobState.failed)
            raise
        recorder.ended(outcome.state)
        report_progress(**{**outcome.counts, "state": outcome.state.value, "manifest_version": outcome.manifest_version,
                           "blacklist": origin})
        return outcome.model_dump(mode="json")
    finally:
        stop_renewing.set()
        renewer.join(5)
        control.release(token)


def _renew_lease(control: HarvestControl, token: str, ttl: int, stop: threading.Event) -> None:
    while not stop.wait(max(0.5, ttl / 3)):
        try:
            if not control.renew(token, ttl):
                logger.error("harvest %s: lost its lease", control.id)
        except Exception:  # noqa: BLE001 - Redis hiccup: try again at the next tick
            logger.exception("harvest %s: lease renewal failed", control.id)
