"""The downloader's long jobs on the RQ queue ``harvest``: ``submit_harvest`` (routes) and three steps a worker
runs, any worker on any host:

    run_harvest(id, attempt)            plan: read the input and every checkpoint, split the rows still to fetch
                                        into shards (``assignment.split_into_shards``, ``shard_rows`` each, one
                                        domain's rows together), save the plan, queue one job per shard and a
                                        merge job that waits for all of them (RQ dependencies)
    run_harvest_shard(id, attempt, n)   fetch shard n: checkpoints of its own, per-domain politeness in Redis
    merge_harvest(id, attempt)          once every shard has ended: the new manifest version from every
                                        checkpoint (rows a shard left, when it failed for good, are fetched here)

Every step is idempotent and retried by RQ when its worker dies (``job_retries``); each holds a lease (the
harvest's, or its shard's) so a retry never runs beside a still-living first try. A resume is a new attempt:
the steps of an older attempt find they are superseded and end without doing anything. No step has a time
limit: they checkpoint, and a retry goes on where the last one stopped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq.job import Job

from services.downloader.core.config import DownloaderSettings, get_downloader_settings
from services.downloader.harvest.assignment import split_into_shards
from services.downloader.harvest.blacklist import load_blacklist
from services.downloader.harvest.control import HarvestControl
from services.downloader.harvest.engine import Harvester, HarvestHooks
from services.downloader.harvest.loop import run_event_loop
from services.downloader.harvest.state import HarvestOutcome, HarvestRequest, HarvestState
from services.downloader.metrics import HarvestRecorder
from shared.curation import Blacklist
from shared.job_metrics import JobMetrics
from shared.queue import JobState, QueueName, enqueue, fetch_job, redis_connection, report_progress
from shared.settings import Settings, get_settings
from shared.storage import ObjectStore

logger = logging.getLogger(__name__)


class HarvestBusy(RuntimeError):
    """Another worker holds the lease of the harvest (or of the shard)."""


KEEP_SECONDS = 7 * 24 * 3600  # a harvest job's result or failure stays readable for a week


def plan_job_id(harvest_id: str, attempt: int) -> str:
    return f"{harvest_id}-{attempt}"


def shard_job_id(harvest_id: str, attempt: int, shard: int) -> str:
    return f"{harvest_id}-{attempt}-s{shard:04d}"


def merge_job_id(harvest_id: str, attempt: int) -> str:
    return f"{harvest_id}-{attempt}-merge"


def shard_name(attempt: int, shard: int) -> str:
    """The shard's checkpoint writer and lease name."""
    return f"a{attempt}-s{shard:04d}"


def attempt_of(plan_id: str) -> int:
    return int(plan_id.rsplit("-", 1)[1])


def submit_harvest(connection: Redis, request: HarvestRequest, retries: int) -> Job:
    """Queue (another attempt at) the harvest: its plan job, which queues the rest; the control record names
    the plan job now in charge."""
    control = HarvestControl(connection, request.id)
    attempt = control.next_attempt()
    job = enqueue(connection, QueueName.harvest, run_harvest, request.id, attempt,
                  job_id=plan_job_id(request.id, attempt), timeout_s=None, keep_s=KEEP_SECONDS, retries=retries,
                  description=f"harvest {request.dataset} v{request.version}: plan")
    control.set_job(job.id)
    return job


def run_harvest(harvest_id: str, attempt: int) -> dict[str, Any]:
    return plan_harvest(harvest_id, attempt, get_settings(), get_downloader_settings())


def run_harvest_shard(harvest_id: str, attempt: int, shard: int) -> dict[str, Any]:
    return harvest_shard(harvest_id, attempt, shard, get_settings(), get_downloader_settings())


def merge_harvest(harvest_id: str, attempt: int) -> dict[str, Any]:
    return finish_harvest(harvest_id, attempt, get_settings(), get_downloader_settings())


class _Step:
    """What every step needs: storage, Redis, the control record, the request, metrics."""

    def __init__(self, harvest_id: str, attempt: int, settings: Settings) -> None:
        self.settings = settings
        self.store = ObjectStore.from_settings(settings)
        self.state = HarvestState(self.store, harvest_id)
        self.connection = redis_connection(settings)
        self.control = HarvestControl(self.connection, harvest_id)
        self.recorder = HarvestRecorder(JobMetrics(self.connection))
        self.plan_id = plan_job_id(harvest_id, attempt)

    def superseded(self) -> bool:
        current = self.control.job_id()
        return current is not None and current != self.plan_id

    @contextmanager
    def leased(self, ttl: int, key: str | None = None) -> Iterator[dict[str, Any] | None]:
        """The preamble of every step: a harvest already finished gives its outcome, a step of an older attempt
        ``{"superseded": True}``; otherwise the block runs holding the lease (the harvest's, or ``key``) and
        gets None. The step returns what it got when it is not None."""
        finished = self.state.outcome()
        if finished is not None:
            yield finished.model_dump(mode="json")
        elif self.superseded():
            yield {"superseded": True}
        else:
            with _lease(self.control, ttl, key):
                yield None

    def blacklist(self, downloader: DownloaderSettings, plan: dict[str, Any] | None = None) -> tuple[Blacklist, str]:
        """The blacklist the attempt's plan saved (its shards and merge obey the one the plan read, and do not
        ask the curator again, once per shard); for the plan, or a plan saved without one, today's."""
        if plan is not None and "blacklist" in plan:
            return Blacklist.model_validate(plan["blacklist"]), str(plan["progress"].get("blacklist", "plan"))
        blacklist, origin = asyncio.run(load_blacklist(
            self.settings.curator_url, self.store, downloader.blacklist_cache_key, downloader.blacklist_timeout_s))
        logger.info("harvest %s: blacklist from %s (%d entries)", self.state.id, origin, len(blacklist.entries))
        return blacklist, origin


def plan_harvest(harvest_id: str, attempt: int, settings: Settings, downloader: DownloaderSettings) -> dict[str, Any]:
    step = _Step(harvest_id, attempt, settings)
    with step.leased(downloader.lease_ttl_s) as ended:
        if ended is not None:
            return ended
        plan = step.state.plan(attempt)
        if plan is None:  # not planned before (a retried plan job keeps the plan it saved)
            request = step.state.request()
            blacklist, origin = step.blacklist(downloader)
            harvester = Harvester(step.store, request, downloader, blacklist)
            run_event_loop(harvester.plan())
            tasks = harvester.planned()
            # a class cap counts stored images over the whole harvest: such a harvest is one shard
            rows = downloader.shard_rows if request.options.max_per_class is None else max(1, len(tasks))
            plan = {"shards": split_into_shards(tasks, rows),
                    "progress": {**harvester.progress(), "blacklist": origin},
                    "blacklist": blacklist.model_dump(mode="json")}
            step.state.save_plan(attempt, plan)
        shards: list[list[str]] = plan["shards"]
        step.control.set_shards(attempt, len(shards))
        report_progress(**plan["progress"], shards=len(shards))
        ids = []
        for shard in range(len(shards)):
            job_id = shard_job_id(harvest_id, attempt, shard)
            if fetch_job(step.connection, job_id) is None:
                enqueue(step.connection, QueueName.harvest, run_harvest_shard, harvest_id, attempt, shard,
                        job_id=job_id, timeout_s=None, keep_s=KEEP_SECONDS, retries=downloader.job_retries,
                        description=f"harvest {harvest_id}: shard {shard + 1}/{len(shards)}")
            ids.append(job_id)
        merge_id = merge_job_id(harvest_id, attempt)
        if fetch_job(step.connection, merge_id) is None:
            enqueue(step.connection, QueueName.harvest, merge_harvest, harvest_id, attempt, job_id=merge_id,
                    timeout_s=None, keep_s=KEEP_SECONDS, retries=downloader.job_retries, after=ids,
                    description=f"harvest {harvest_id}: merge")
        logger.info("harvest %s attempt %d: %d row(s) to fetch in %d shard(s)", harvest_id, attempt,
                    sum(len(shard) for shard in shards), len(shards))
        return {"shards": len(shards)}


def harvest_shard(harvest_id: str, attempt: int, shard: int, settings: Settings,
                  downloader: DownloaderSettings) -> dict[str, Any]:
    step = _Step(harvest_id, attempt, settings)
    name = shard_name(attempt, shard)
    with step.leased(downloader.lease_ttl_s, step.control.shard_lease_key(name)) as ended:
        if ended is not None:
            return ended
        plan = step.state.plan(attempt)
        if plan is None:
            raise RuntimeError(f"harvest {harvest_id} attempt {attempt} has no plan")
        rows = frozenset(plan["shards"][shard])
        request = step.state.request()
        blacklist, _ = step.blacklist(downloader, plan)
        hooks = HarvestHooks(progress=lambda progress: report_progress(**progress),
                             should_cancel=lambda: step.control.stop_requested(step.plan_id),
                             checkpointed=step.recorder.checkpointed)
        harvester = Harvester(step.store, request, downloader, blacklist, hooks, shard=(name, rows), redis=settings)
        outcome = run_event_loop(harvester.run())
        report_progress(**outcome.counts)
        return outcome.model_dump(mode="json")


def finish_harvest(harvest_id: str, attempt: int, settings: Settings,
                   downloader: DownloaderSettings) -> dict[str, Any]:
    step = _Step(harvest_id, attempt, settings)
    with step.leased(downloader.lease_ttl_s) as ended:
        if ended is not None:
            return ended
        request = step.state.request()
        blacklist, origin = step.blacklist(downloader, step.state.plan(attempt))
        hooks = HarvestHooks(progress=lambda progress: report_progress(**progress, blacklist=origin),
                             should_cancel=step.control.cancel_requested, checkpointed=step.recorder.checkpointed,
                             final_counts=lambda counts: _over_the_attempt(step, attempt, counts))
        try:
            outcome: HarvestOutcome = run_event_loop(
                Harvester(step.store, request, downloader, blacklist, hooks, redis=settings).run())
        except Exception:
            step.recorder.ended(JobState.failed)
            raise
        step.recorder.ended(outcome.state)
        report_progress(**{**outcome.counts, "state": outcome.state.value,
                           "manifest_version": outcome.manifest_version, "blacklist": origin})
        return outcome.model_dump(mode="json")


def _over_the_attempt(step: _Step, attempt: int, counts: dict[str, Any]) -> dict[str, Any]:
    """The merge's counts (every row, read from the checkpoints) with the rate and time of the whole attempt,
    from its plan job's start: what the shards fetched, not what the merge did."""
    plan = step.state.plan(attempt)
    job = fetch_job(step.connection, step.plan_id)
    if plan is None or job is None or job.started_at is None:
        return counts
    started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=UTC)
    elapsed = max(1e-6, (datetime.now(UTC) - started).total_seconds())
    before = plan["progress"]
    fetched = counts["done"] - before.get("done", 0)
    return {**counts, "resumed": before.get("resumed", 0), "elapsed_s": round(elapsed, 2),
            "images_per_s": round(fetched / elapsed, 2)}


@contextmanager
def _lease(control: HarvestControl, ttl: int, key: str | None = None) -> Iterator[None]:
    """Hold a lease (the harvest's, or ``key``) while the block runs, renewed by a thread; a dead worker's
    lease runs out within ``ttl``, so a retry waits at most about that long."""
    token = uuid.uuid4().hex
    deadline = time.monotonic() + 2 * ttl + 5
    while not control.acquire(token, ttl, key):
        if time.monotonic() > deadline:
            raise HarvestBusy(f"{key or control.lease_key} is held by another worker")
        time.sleep(0.5)
    stop = threading.Event()
    renewer = threading.Thread(target=_renew_lease, args=(control, token, ttl, key, stop), name="harvest-lease",
                               daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join(5)
        control.release(token, key)


def _renew_lease(control: HarvestControl, token: str, ttl: int, key: str | None, stop: threading.Event) -> None:
    while not stop.wait(max(0.5, ttl / 3)):
        try:
            if not control.renew(token, ttl, key):
                logger.error("harvest %s: lost its lease %s", control.id, key or control.lease_key)
        except Exception:  # noqa: BLE001 - Redis hiccup: try again at the next tick
            logger.exception("harvest %s: lease renewal failed", control.id)
