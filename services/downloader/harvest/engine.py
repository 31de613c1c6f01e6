"""The harvest engine: one event loop keeps many requests in flight across domains, a worker pool does
the CPU work (decode, validate, resize), and object storage receives each image once.

Flow of one row: plan (class filter, blacklist, class cap) -> domain queue -> fetch (per-domain and
global limits) -> normalise in the pool -> content-addressed write -> result -> checkpoint. A harvest
restarted after a crash reads its checkpoints and only fetches rows without a result.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import random
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pyarrow as pa
import pyarrow.compute as pc

from services.downloader.core.config import DownloaderSettings
from services.downloader.harvest.domains import DomainGate
from services.downloader.harvest.fetch import FetchLimits, Outcome, fetch_image
from services.downloader.harvest.imaging import ImagePolicy, Normalised, normalise
from services.downloader.harvest.merge import harvest_stats, merge_results, results_table
from services.downloader.harvest.safety import GuardedResolver
from services.downloader.harvest.sink import ImageSink
from services.downloader.harvest.state import HarvestOutcome, HarvestRequest, HarvestState, RowResult
from shared.cpus import available_cpus
from shared.curation import Blacklist
from shared.manifests import ManifestStore
from shared.queue import JobState
from shared.schemas import HarvestStatus, Operation
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


@dataclass(slots=True)
class RowTask:
    image_id: str
    url: str
    domain: str
    species: str
    attempts: int = 0


@dataclass
class HarvestHooks:
    """How a harvest talks to whoever runs it: progress out, cancellation in. Both are called on the
    event loop's thread (RQ's current job is per thread), a few times a second, and must be quick."""

    progress: Callable[[dict[str, Any]], None] = lambda progress: None
    should_cancel: Callable[[], bool] = lambda: False


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
    def __init__(self, store: ObjectStore, request: HarvestRequest, settings: DownloaderSettings,
                 blacklist: Blacklist, hooks: HarvestHooks | None = None) -> None:
        self.store = store
        self.request = request
        self.options = request.options
        self.settings = settings
        self.blacklist = blacklist
        self.hooks = hooks or HarvestHooks()
        self.state = HarvestState(store, request.id)
        self.manifests = ManifestStore(store)
        self.policy = ImagePolicy(
            max_side=self.options.resize.max_side, quality=self.options.resize.quality,
            min_width=self.options.min_width, min_height=self.options.min_height,
            max_pixels=self.options.max_pixels,
        )
        self.limits = FetchLimits(self.options.max_bytes, self.options.max_redirects, settings.allow_loopback)
        self._gates: dict[str, DomainGate] = {}
        self._results: dict[str, RowResult] = {}
        self._unsaved: list[RowResult] = []
        self._counts = _Counts()
        self._resumed = 0
        self._ok_per_class: Counter[str] = Counter()
        self._waiting: dict[str, deque[RowTask]] = defaultdict(deque)
        self._outstanding = 0
        self._in_flight = 0  # rows being fetched: bounded by options.concurrency
        self._processing = 0  # rows fetched and waiting for the CPU pool or storage
        self._planned = 0
        self._finished_now = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._wake = asyncio.Event()
        self._cancelled = False
        self._started = time.monotonic()
        self._total_rows = 0
        self._pool: Executor | None = None

    # ------------------------------------------------------------------ run
    async def run(self) -> HarvestOutcome:
        finished = await asyncio.to_thread(self.state.outcome)
        if finished is not None:
            logger.info("harvest %s already %s", self.request.id, finished.state)
            return finished
        table = await asyncio.to_thread(self.manifests.read, self.request.dataset, self.request.version)
        done = await asyncio.to_thread(self.state.load_results)
        self._plan(table, done)
        logger.info("harvest %s: %d rows, %d to fetch, %d resumed from checkpoints", self.request.id,
                    table.num_rows, self._outstanding + sum(len(w) for w in self._waiting.values()), len(done))
        self._pool = self._make_pool()
        try:
            async with self._web_session() as web, self._storage_session() as s3:
                self._web = web
                self._sink = ImageSink(self.store, s3, self.settings.store_concurrency)
                ticker = asyncio.create_task(self._tick_loop())
                try:
                    await self._dispatch()
                finally:
                    ticker.cancel()
                    await asyncio.gather(ticker, return_exceptions=True)
                    await self._stop_tasks()
                    await self._checkpoint()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._cancelled:
            outcome = HarvestOutcome(state=JobState.cancelled, dataset=self.request.dataset,
                                     parent_version=self.request.version,
                                     counts=self.progress(state=JobState.cancelled),
                                     finished_at=datetime.now(UTC))
            await asyncio.to_thread(self.state.save_outcome, outcome)
            return outcome
        self._skip_class_waiting()
        version = await asyncio.to_thread(self._write_manifest, table)
        outcome = HarvestOutcome(state=JobState.completed, dataset=self.request.dataset,
                                 parent_version=self.request.version, manifest_version=version,
                                 counts=self.progress(state=JobState.completed), finished_at=datetime.now(UTC))
        await asyncio.to_thread(self.state.save_outcome, outcome)
        self.hooks.progress(self.progress(state=JobState.completed))
        return outcome

    def cancel(self) -> None:
        self._cancelled = True
        self._wake.set()

    # ------------------------------------------------------------------ plan
    def _plan(self, table: pa.Table, done: dict[str, RowResult]) -> None:
        columns = {name: table.column(name).to_pylist() for name in ("image_id", "url", "error")}
        for name in ("domain", "species", "status"):  # few distinct values: one str object each, not one per row
            columns[name] = shared_values(table.column(name))
        classes = set(self.options.classes) if self.options.classes else None
        candidates: dict[str, list[RowTask]] = defaultdict(list)
        self._total_rows = table.num_rows
        for image_id, url, domain, species, status, error in zip(
                columns["image_id"], columns["url"], columns["domain"], columns["species"], columns["status"],
                columns["error"], strict=True):
            cls = species or "(none)"
            previous = done.get(image_id)
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
        cap = self.options.max_per_class
        for cls, tasks in candidates.items():
            budget = len(tasks) if cap is None else max(0, cap - self._ok_per_class[cls])
            for task in tasks[:budget]:
                self._enqueue(task)
            self._waiting[cls].extend(tasks[budget:])
        self._planned = self._outstanding + sum(len(w) for w in self._waiting.values())

    def _gate(self, domain: str) -> DomainGate:
        gate = self._gates.get(domain)
        if gate is None:
            gate = self._gates[domain] = DomainGate(
                domain, self.options.per_domain, self.options.breaker_failures, self.options.park_s,
                self.options.max_parks)
        return gate

    def _enqueue(self, task: RowTask) -> None:
        self._gate(task.domain).queue.append(task)
        self._outstanding += 1

    # ------------------------------------------------------------------ dispatch
    async def _dispatch(self) -> None:
        rotation = 0
        while self._outstanding > 0 and not self._cancelled:
            self._wake.clear()
            now = time.monotonic()
            gates = [gate for gate in self._gates.values() if gate.queue]
            if gates:
                rotation = (rotation + 1) % len(gates)
                gates = gates[rotation:] + gates[:rotation]
            next_time: float | None = None
            for gate in gates:
                if gate.given_up:
                    self._fail_domain(gate)
                    continue
                while self._has_room() and gate.ready(now):
                    self._launch(gate, gate.queue.popleft())
                if gate.queue and gate.not_before > now:
                    next_time = gate.not_before if next_time is None else min(next_time, gate.not_before)
            if self._outstanding == 0:
                break
            timeout = None if next_time is None else max(0.005, next_time - time.monotonic())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
        if not self._cancelled:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _has_room(self) -> bool:
        """A free network slot, and not too many fetched images waiting for the CPU (memory stays bounded).

        A row gives its network slot back as soon as its bytes are in, so fetching goes on while the pool
        decodes: the network and the CPU are busy at the same time instead of taking turns."""
        concurrency = self.options.concurrency
        return self._in_flight < concurrency and self._in_flight + self._processing < 2 * concurrency

    def _launch(self, gate: DomainGate, task: RowTask) -> None:
        gate.in_flight += 1
        self._in_flight += 1
        running = asyncio.create_task(self._handle(gate, task))
        self._tasks.add(running)
        running.add_done_callback(self._tasks.discard)

    async def _handle(self, gate: DomainGate, task: RowTask) -> None:
        holding_slot = True
        try:
            try:
                fetched = await fetch_image(self._web, task.url, self.limits, self.blacklist)
            finally:
                gate.in_flight -= 1
            now = time.monotonic()
            if fetched.outcome is Outcome.retry:
                backoff = self._backoff(task.attempts)
                if fetched.throttled:
                    gate.on_throttle(now, fetched.retry_after_s if fetched.retry_after_s is not None else backoff)
                else:
                    gate.on_failure(now, host_trouble=fetched.host_trouble)
                if task.attempts < self.options.retries and not gate.given_up:
                    task.attempts += 1
                    self._in_flight -= 1
                    holding_slot = False
                    self._retry_later(gate, task, max(backoff, fetched.retry_after_s or 0.0))
                    return
                detail = fetched.error or "transient error"
                error = f"{detail}{'; ' if ':' in detail else ': '}after {task.attempts + 1} attempts"
                if gate.given_up:
                    error = f"domain-unreachable: {fetched.error}; gave up after {gate.parks - 1} parks"
                self._record(task, RowResult(image_id=task.image_id, status=HarvestStatus.failed, error=error))
                return
            if fetched.outcome is Outcome.ok:
                gate.on_success(fetched.elapsed_s)
            elif fetched.outcome is Outcome.failed:
                gate.on_failure(now, host_trouble=fetched.host_trouble)
            if fetched.outcome is not Outcome.ok:
                self._record(task, RowResult(image_id=task.image_id, status=HarvestStatus(fetched.outcome.value),
                                             error=fetched.error))
                return
            self._in_flight -= 1
            holding_slot = False
            self._processing += 1
            self._wake.set()
            try:
                result = await self._normalise_and_store(task, fetched.data)
            finally:
                self._processing -= 1
            self._record(task, result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one row's surprise must not stop the harvest
            logger.exception("harvest %s: row %s failed unexpectedly", self.request.id, task.image_id)
            self._record(task, RowResult(image_id=task.image_id, status=HarvestStatus.failed,
                                         error=f"internal: {type(exc).__name__}: {str(exc)[:160]}"))
        finally:
            if holding_slot:
                self._in_flight -= 1
            self._wake.set()

    async def _normalise_and_store(self, task: RowTask, data: bytes) -> RowResult:
        loop = asyncio.get_running_loop()
        assert self._pool is not None
        image: Normalised = await loop.run_in_executor(self._pool, normalise, data, self.policy)
        if image.status != HarvestStatus.ok or image.sha256 is None:
            return RowResult(image_id=task.image_id, status=HarvestStatus(image.status), error=image.error,
                             width=image.width, height=image.height)
        key, _created = await self._sink.put(image.sha256, image.data)
        return RowResult(image_id=task.image_id, status=HarvestStatus.ok, sha256=image.sha256, bytes=len(image.data),
                         width=image.width, height=image.height, storage_key=key)

    def _backoff(self, attempt: int) -> float:
        base = min(self.options.max_backoff_s, self.options.backoff_s * 2**attempt)
        return base * random.uniform(0.5, 1.5)

    def _retry_later(self, gate: DomainGate, task: RowTask, delay: float) -> None:
        def requeue() -> None:
            self._timers.discard(handle)
            gate.queue.append(task)
            self._wake.set()

        handle = asyncio.get_running_loop().call_later(delay, requeue)
        self._timers.add(handle)

    def _fail_domain(self, gate: DomainGate) -> None:
        while gate.queue:
            task = gate.queue.popleft()
            self._record(task, RowResult(image_id=task.image_id, status=HarvestStatus.failed,
                                         error=f"domain-unreachable: {gate.name} parked {gate.max_parks} times"))

    async def _stop_tasks(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for running in list(self._tasks):
            running.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ results
    def _remember(self, result: RowResult, resumed: bool = False) -> None:
        self._results[result.image_id] = result
        self._counts.add(result)
        if resumed:
            self._resumed += 1

    def _record(self, task: RowTask, result: RowResult) -> None:
        self._remember(result)
        self._unsaved.append(result)
        self._outstanding -= 1
        self._finished_now += 1
        if result.status == HarvestStatus.ok:
            self._ok_per_class[task.species] += 1
        elif self._waiting[task.species]:
            self._enqueue(self._waiting[task.species].popleft())  # a reserved slot of the class came free

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
            await asyncio.to_thread(self.state.append, batch)
        except Exception:
            self._unsaved = batch + self._unsaved
            raise

    async def _tick_loop(self) -> None:
        last_checkpoint = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.progress_interval_s)
            if self.hooks.should_cancel():
                logger.info("harvest %s: cancel requested", self.request.id)
                self.cancel()
                return
            if time.monotonic() - last_checkpoint >= self.settings.checkpoint_interval_s:
                last_checkpoint = time.monotonic()
                await self._checkpoint()
            self.hooks.progress(self.progress())

    def progress(self, state: JobState = JobState.running) -> dict[str, Any]:
        elapsed = max(1e-6, time.monotonic() - self._started)
        remaining = self._outstanding
        rate = self._finished_now / elapsed
        now = time.monotonic()
        return {
            "state": state.value,  # a plain str: this dict goes into RQ job meta and result.json
            "rows": self._total_rows,
            "total": self._planned + self._resumed,
            "done": self._finished_now + self._resumed,
            "remaining": remaining,
            "in_flight": self._in_flight,  # being fetched
            "processing": self._processing,  # fetched, being validated, resized or stored
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
            "domains_parked": sorted(g.name for g in self._gates.values() if g.not_before > now and g.parks),
            "domains_given_up": sorted(g.name for g in self._gates.values() if g.given_up),
        }

    def domain_report(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        return {name: gate.snapshot(now) for name, gate in sorted(self._gates.items())}

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

    # ------------------------------------------------------------------ resources
    def _make_pool(self) -> Executor:
        cores = available_cpus()
        if self.settings.cpu_pool == "thread":
            # two per core: while one thread holds the GIL for Pillow's Python-level steps, another decodes
            return ThreadPoolExecutor(self.settings.cpu_workers or 2 * cores, thread_name_prefix="harvest-cpu")
        workers = self.settings.cpu_workers or cores
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["services.downloader.harvest.imaging"])
        return ProcessPoolExecutor(workers, mp_context=context)

    def _web_session(self) -> aiohttp.ClientSession:
        resolver = GuardedResolver(self.settings.resolve, self.settings.allow_loopback)
        connector = aiohttp.TCPConnector(resolver=resolver, limit=self.options.concurrency, limit_per_host=0,
                                         ttl_dns_cache=300, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.options.total_timeout_s, connect=self.options.connect_timeout_s,
                                        sock_read=self.options.read_timeout_s)
        return aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False,
                                     cookie_jar=aiohttp.DummyCookieJar(),
                                     headers={"User-Agent": self.settings.user_agent, "Accept": "image/*"})

    def _storage_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.settings.store_concurrency)
        return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120), trust_env=False)
