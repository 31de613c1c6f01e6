"""The harvest engine: plans the rows, fetches them with one fetch loop in this process (``fetcher.py``),
keeps every row's result, checkpoints, reports progress and writes the new manifest version. A harvest is
split into shards (``jobs.py``), RQ jobs on queue ``harvest``: to use more cores, run more RQ workers.

Flow of one row: plan (class filter, blacklist, class cap) -> the fetch loop (per-domain and global limits,
fetch, normalise in its thread pool, content-addressed write) -> result -> checkpoint. A harvest restarted
after a crash reads its checkpoints and only fetches rows without a result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from services.downloader.core.config import DownloaderSettings
from services.downloader.harvest.fetcher import FetchConfig, Fetcher, RowTask
from services.downloader.harvest.merge import harvest_stats, merge_results, results_table
from services.downloader.harvest.state import HarvestOutcome, HarvestRequest, HarvestState, RowResult
from shared.cpus import available_cpus
from shared.curation import Blacklist
from shared.manifests import ManifestStore
from shared.queue import JobState
from shared.schemas import HarvestStatus, Operation
from shared.settings import Settings
from shared.storage import ObjectStore

logger = logging.getLogger(__name__)

# Skips that a new harvest decides afresh (its own options and today's blacklist); others stay.
_RECONSIDERED_SKIPS = ("class-cap", "class-filter", "blacklisted")


def shared_values(column: pa.ChunkedArray) -> list[Any]:
    """``column.to_pylist()``, with every repeated value the same Python object (a row keeps a reference,
    not a copy: a million rows of twenty domains hold twenty strings)."""
    encoded = pc.dictionary_encode(column.combine_chunks())
    values = encoded.dictionary.to_pylist()
    return [None if index is None else values[index] for index in encoded.indices.to_pylist()]


@dataclass
class HarvestHooks:
    """How a harvest talks to whoever runs it: progress out, cancellation in, saved rows out. The first two
    are called on the event loop's thread (RQ's current job is per thread), a few times a second, and must be
    quick; ``checkpointed`` gets the rows of each checkpoint once saved, on a worker thread (it may block)."""

    progress: Callable[[dict[str, Any]], None] = lambda progress: None
    should_cancel: Callable[[], bool] = lambda: False
    checkpointed: Callable[[list[RowResult]], None] = lambda results: None
    # the counts the outcome keeps, from the harvest's own (the merge of a sharded harvest adds the shards' rate)
    final_counts: Callable[[dict[str, Any]], dict[str, Any]] = lambda counts: counts


@dataclass
class _Counts:
    status: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    bytes: int = 0

    def add(self, result: RowResult) -> None:
        self.status[result.status] += 1
        reason = reason_of(result.error)
        if result.status == HarvestStatus.failed:
            self.failed[reason] += 1
        elif result.status == HarvestStatus.skipped:
            self.skipped[reason] += 1
        self.bytes += result.bytes or 0


def reason_of(error: str | None) -> str:
    """The reason of an ``error`` written as ``reason: detail``."""
    return (error or "").split(":", 1)[0] or "unknown"


class Harvester:
    """One harvest, or one shard of it (``shard``: its number and the image ids it fetches; ``jobs.py`` splits a
    harvest into shards, RQ jobs any worker takes). A shard checkpoints its rows under its own name and writes
    no manifest: the harvest's last job does, from every shard's checkpoints. ``redis``: keep per-domain
    politeness in Redis, shared by every worker (``politeness.py``); None: per worker only."""

    def __init__(self, store: ObjectStore, request: HarvestRequest, settings: DownloaderSettings,
                 blacklist: Blacklist, hooks: HarvestHooks | None = None, *,
                 shard: tuple[str, frozenset[str]] | None = None, redis: Settings | None = None) -> None:
        self.shard = shard
        self.redis = redis
        self.store = store
        self.request = request
        self.options = request.options
        self.settings = settings
        self.blacklist = blacklist
        self.hooks = hooks or HarvestHooks()
        self.state = HarvestState(store, request.id, writer=shard[0] if shard else None)
        self.manifests = ManifestStore(store)
        self._fetcher = Fetcher(FetchConfig(
            harvest_id=request.id, options=self.options, settings=settings, blacklist=blacklist,
            concurrency=self.options.concurrency, store_concurrency=settings.store_concurrency,
            cpu_threads=settings.cpu_threads or max(2, 2 * available_cpus()), redis=redis,
        ), store, self._take_result)
        self._results: dict[str, RowResult] = {}
        self._unsaved: list[RowResult] = []
        self._counts = _Counts()
        self._resumed = 0
        self._ok_per_class: Counter[str] = Counter()
        self._waiting: dict[str, deque[RowTask]] = defaultdict(deque)
        self._outstanding = 0  # planned rows without a result yet
        self._planned = 0
        self._finished_now = 0
        self._all_done = asyncio.Event()
        self._cancelled = False
        self._started = time.monotonic()
        self._total_rows = 0
        self._candidates: dict[str, list[RowTask]] = {}

    # ------------------------------------------------------------------ run
    async def run(self) -> HarvestOutcome:
        finished = await asyncio.to_thread(self.state.outcome)
        if finished is not None:
            logger.info("harvest %s already %s", self.request.id, finished.state)
            return finished
        table = await self.plan()
        logger.info("harvest %s: %d rows, %d to fetch, %d resumed from checkpoints", self.request.id,
                    table.num_rows, self._planned, self._resumed)
        ticker = asyncio.create_task(self._tick_loop())
        try:
            if self.hooks.should_cancel():  # cancelled before it started (a queued shard, the merge)
                self.cancel()
            elif self._outstanding:
                await self._fetch()
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            await self._checkpoint()
        if self.shard is not None:  # the harvest's last job writes the manifest and the outcome
            state = JobState.cancelled if self._cancelled else JobState.completed
            return HarvestOutcome(state=state, dataset=self.request.dataset, parent_version=self.request.version,
                                  counts=self.progress(state=state), finished_at=datetime.now(UTC))
        if self._cancelled:
            outcome = HarvestOutcome(state=JobState.cancelled, dataset=self.request.dataset,
                                     parent_version=self.request.version,
                                     counts=self.hooks.final_counts(self.progress(state=JobState.cancelled)),
                                     finished_at=datetime.now(UTC))
            await asyncio.to_thread(self.state.save_outcome, outcome)
            return outcome
        self._skip_class_waiting()
        version = await asyncio.to_thread(self._write_manifest, table)
        outcome = HarvestOutcome(state=JobState.completed, dataset=self.request.dataset,
                                 parent_version=self.request.version, manifest_version=version,
                                 counts=self.hooks.final_counts(self.progress(state=JobState.completed)),
                                 finished_at=datetime.now(UTC))
        await asyncio.to_thread(self.state.save_outcome, outcome)
        self.hooks.progress(outcome.counts)
        return outcome

    async def plan(self) -> pa.Table:
        """Read the input version and every checkpoint, and plan the rows to fetch (:meth:`planned`)."""
        table = await asyncio.to_thread(self.manifests.read, self.request.dataset, self.request.version)
        done = await asyncio.to_thread(self.state.load_results)
        self._plan(table, done)
        return table

    def planned(self) -> list[RowTask]:
        """The rows the plan will fetch (those under the class cap's budget first, then the ones waiting)."""
        return [task for tasks in self._candidates.values() for task in tasks]

    def cancel(self) -> None:
        self._cancelled = True
        self._all_done.set()

    async def _fetch(self) -> None:
        """Run the fetch loop until every planned row has its result (or a cancel)."""
        run = asyncio.create_task(self._fetcher.run())
        everything = asyncio.create_task(self._all_done.wait())
        try:
            await asyncio.wait({everything, run}, return_when=asyncio.FIRST_COMPLETED)
            if run.done() and not everything.done():
                run.result()  # it failed (raises): the harvest fails
                raise RuntimeError("the fetch loop stopped before every row had its result")
            if self._cancelled:
                self._fetcher.cancel()
            else:
                self._fetcher.finish()
            try:
                await run
            except Exception as exc:
                if self._cancelled:
                    raise
                # every row's result is in: a loop that failed on its way out loses nothing
                logger.warning("harvest %s: %s", self.request.id, exc)
        finally:
            everything.cancel()
            run.cancel()
            await asyncio.gather(everything, run, return_exceptions=True)

    # ------------------------------------------------------------------ plan
    def _plan(self, table: pa.Table, done: dict[str, RowResult]) -> None:
        columns = {name: table.column(name).to_pylist() for name in ("image_id", "url", "error")}
        for name in ("domain", "species", "status"):  # few distinct values: one str object each, not one per row
            columns[name] = shared_values(table.column(name))
        classes = set(self.options.classes) if self.options.classes else None
        candidates: dict[str, list[RowTask]] = defaultdict(list)
        self._total_rows = table.num_rows
        only = self.shard[1] if self.shard is not None else None
        for image_id, url, domain, species, status, error in zip(
                columns["image_id"], columns["url"], columns["domain"], columns["species"], columns["status"],
                columns["error"], strict=True):
            cls = species or "(none)"
            previous = done.get(image_id)
            if only is not None and image_id not in only:  # another shard's row: it only counts for the cap
                if (previous.status if previous is not None else status) == HarvestStatus.ok:
                    self._ok_per_class[cls] += 1
                continue
            if previous is not None:
                self._remember(previous, resumed=True)
                if previous.status == HarvestStatus.ok:
                    self._ok_per_class[cls] += 1
                continue
            if status == HarvestStatus.ok:
                self._ok_per_class[cls] += 1
                continue
            if status == HarvestStatus.skipped and not (error or "").startswith(_RECONSIDERED_SKIPS):
                continue
            if classes is not None and species not in classes:
                self._remember(RowResult(image_id=image_id, status=HarvestStatus.skipped,
                                         error="class-filter: not among the requested classes"))
                continue
            entry = self.blacklist.match(url)
            if entry is not None:
                self._remember(RowResult(image_id=image_id, status=HarvestStatus.skipped,
                                         error=f"blacklisted: {entry.entry}"))
                continue
            candidates[cls].append(RowTask(image_id, url, domain or "", cls))
        self._candidates = candidates
        cap = self.options.max_per_class
        for cls, tasks in candidates.items():
            budget = len(tasks) if cap is None else max(0, cap - self._ok_per_class[cls])
            for task in tasks[:budget]:
                self._enqueue(task)
            self._waiting[cls].extend(tasks[budget:])
        self._planned = self._outstanding + sum(len(w) for w in self._waiting.values())

    def _enqueue(self, task: RowTask) -> None:
        self._fetcher.submit((task,))
        self._outstanding += 1

    def _take_result(self, task: RowTask, result: RowResult) -> None:
        """A row's result from the fetch loop (on this loop)."""
        self._record(task, result)
        if self._outstanding == 0:
            self._all_done.set()

    # ------------------------------------------------------------------ results
    def _remember(self, result: RowResult, resumed: bool = False) -> None:
        self._results[result.image_id] = result
        self._counts.add(result)
        if resumed:
            self._resumed += 1

    def _record(self, task: RowTask, result: RowResult) -> None:
        """Keep a finished row's result; when the class cap reserved the slot for this row and it stored no
        image, a waiting row of the class is queued in its place."""
        self._remember(result)
        self._unsaved.append(result)
        self._outstanding -= 1
        self._finished_now += 1
        if result.status == HarvestStatus.ok:
            self._ok_per_class[task.species] += 1
        elif self._waiting[task.species]:
            self._enqueue(self._waiting[task.species].popleft())

    def _skip_class_waiting(self) -> None:
        cap = self.options.max_per_class
        for cls, waiting in self._waiting.items():
            while waiting:
                task = waiting.popleft()
                self._remember(RowResult(image_id=task.image_id, status=HarvestStatus.skipped,
                                         error=f"class-cap: {cap} images of {cls} stored"))

    async def _checkpoint(self) -> None:
        batch, self._unsaved = self._unsaved, []
        if not batch:
            return
        try:
            await asyncio.to_thread(self._save, batch)
        except Exception:
            self._unsaved = batch + self._unsaved
            raise

    def _save(self, batch: list[RowResult]) -> None:
        """Append a checkpoint, then hand its rows to the hook: in one thread, so that a tick cancelled while
        it saves still reports what it saved."""
        self.state.append(batch)
        try:
            self.hooks.checkpointed(batch)
        except Exception:  # noqa: BLE001 - saved is saved: the rows must not be appended again
            logger.exception("harvest %s: checkpoint hook failed", self.request.id)

    async def _tick_loop(self) -> None:
        """A few times a second: cancel requested?, checkpoint, progress. A failed
        tick (Redis or S3 away for a moment) is logged and the next one tries again."""
        last_checkpoint = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.progress_interval_s)
            try:
                if self.hooks.should_cancel():
                    logger.info("harvest %s: cancel requested", self.request.id)
                    self.cancel()
                    return
                if time.monotonic() - last_checkpoint >= self.settings.checkpoint_interval_s:
                    last_checkpoint = time.monotonic()
                    await self._checkpoint()
                self.hooks.progress(self.progress())
            except Exception:  # noqa: BLE001 - the harvest goes on; the final checkpoint is not in here
                logger.exception("harvest %s: progress tick failed", self.request.id)

    def progress(self, state: JobState = JobState.running) -> dict[str, Any]:
        elapsed = max(1e-6, time.monotonic() - self._started)
        remaining = self._outstanding
        rate = self._finished_now / elapsed
        status = self._fetcher.status()
        return {
            "state": state.value,  # a plain str: this dict goes into RQ job meta and result.json
            "rows": self._total_rows,
            "total": self._planned + self._resumed,
            "done": self._finished_now + self._resumed,
            "remaining": remaining,
            "in_flight": status.in_flight,  # being fetched
            "processing": status.processing,  # fetched, being validated, resized or stored
            "resumed": self._resumed,
            "ok": self._counts.status[HarvestStatus.ok],
            "failed": self._counts.status[HarvestStatus.failed],
            "skipped": self._counts.status[HarvestStatus.skipped],
            "failed_by_reason": dict(self._counts.failed),
            "skipped_by_reason": dict(self._counts.skipped),
            "bytes": self._counts.bytes,
            "elapsed_s": round(elapsed, 2),
            "images_per_s": round(rate, 2),
            "eta_s": round(remaining / rate, 1) if rate > 0 and remaining else (0.0 if not remaining else None),
            "domains_parked": status.parked,
            "domains_given_up": status.given_up,
        }

    # ------------------------------------------------------------------ manifest
    def _write_manifest(self, table: pa.Table) -> int:
        source = f"harvest:{self.request.id}"
        for info in self.manifests.versions(self.request.dataset):
            if info.source == source:  # written before a crash: do not write it twice
                return info.version
        table = merge_results(table, results_table(self._results.values(), table.schema))
        stats = {**harvest_stats(table), "bytes": self._counts.bytes}
        info = self.manifests.write(self.request.dataset, table, Operation.harvest, parent=self.request.version,
                                    source=source, stats=stats)
        return info.version
