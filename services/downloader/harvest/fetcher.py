"""The fetch loop of a harvest (or of one shard of it): one event loop that fetches, validates, resizes and
stores the rows it is given, in the worker's own process.

Inside it: per-domain gates (politeness), a global limit of requests in flight, a thread pool for the CPU work
(Pillow lets go of the interpreter lock while it decodes and resizes, so the loop keeps fetching) and
content-addressed writes to object storage. Every row handed in comes back out exactly once, as a
:class:`RowResult`, through ``report``. One worker keeps about two CPUs busy; more cores: more RQ workers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import aiohttp

from services.downloader.core.config import DownloaderSettings
from services.downloader.harvest.domains import DomainGate
from services.downloader.harvest.fetch import Fetched, FetchLimits, Outcome, fetch_image
from services.downloader.harvest.imaging import ImagePolicy, Normalised, normalise
from services.downloader.harvest.options import HarvestOptions
from services.downloader.harvest.politeness import Event, Exchange, GlobalPoliteness, Release
from services.downloader.harvest.sink import ImageSink
from services.downloader.harvest.state import RowResult
from shared.curation import Blacklist
from shared.network_safety import GuardedResolver
from shared.queue import redis_connection
from shared.schemas import HarvestStatus
from shared.settings import Settings
from shared.storage import ObjectStore

logger = logging.getLogger(__name__)

_GLOBAL_POLL_S = 0.02  # how soon the loop asks again for a domain whose global slots other workers hold


@dataclass(slots=True)
class RowTask:
    image_id: str
    url: str
    domain: str
    species: str
    attempts: int = 0


@dataclass(frozen=True)
class FetchConfig:
    """All the fetch loop needs to know."""

    harvest_id: str
    options: HarvestOptions
    settings: DownloaderSettings
    blacklist: Blacklist
    concurrency: int  # requests in flight, all domains
    store_concurrency: int  # uploads to object storage at once
    cpu_threads: int
    # Where the per-domain limits shared by every worker live (``politeness.py``); None: this loop's own only.
    redis: Settings | None = None


@dataclass
class FetchStatus:
    in_flight: int = 0  # being fetched
    processing: int = 0  # fetched, being validated, resized or stored
    parked: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)


class Fetcher:
    def __init__(self, config: FetchConfig, store: ObjectStore, report: Callable[[RowTask, RowResult], None]) -> None:
        self.config = config
        self.options = config.options
        self.store = store
        self.report = report
        self.policy = ImagePolicy(
            max_side=self.options.resize.max_side, quality=self.options.resize.quality,
            min_width=self.options.min_width, min_height=self.options.min_height,
            max_pixels=self.options.max_pixels,
        )
        self.limits = FetchLimits(self.options.max_bytes, self.options.max_redirects, config.settings.allow_loopback)
        self._gates: dict[str, DomainGate] = {}
        self._outstanding = 0  # handed in, not yet reported
        self._in_flight = 0  # rows being fetched: bounded by config.concurrency
        self._processing = 0  # rows fetched and waiting for the CPU pool or storage
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._wake = asyncio.Event()
        self._finishing = False
        self._cancelled = False
        self._failure: Exception | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._global: GlobalPoliteness | None = None
        self._leases: dict[str, tuple[str, str]] = {}  # image id -> (domain, its request's global lease token)
        self._releases: dict[str, list[Release]] = {}  # domain -> leases answered, to give back at the next turn

    # ------------------------------------------------------------------ control (on the loop's thread)
    def submit(self, tasks: Iterable[RowTask]) -> None:
        for task in tasks:
            self._gate(task.domain).queue.append(task)
            self._outstanding += 1
        self._wake.set()

    def finish(self) -> None:
        """No more rows will come: :meth:`run` returns once the rows handed in are reported."""
        self._finishing = True
        self._wake.set()

    def cancel(self) -> None:
        """Stop now: rows in progress are dropped unreported (a resumed harvest fetches them again)."""
        self._cancelled = True
        self._wake.set()

    def status(self) -> FetchStatus:
        now = time.monotonic()
        return FetchStatus(
            in_flight=self._in_flight, processing=self._processing,
            parked=sorted(g.name for g in self._gates.values() if g.not_before > now and g.parks),
            given_up=sorted(g.name for g in self._gates.values() if g.given_up),
        )

    # ------------------------------------------------------------------ run
    async def run(self) -> None:
        self._pool = ThreadPoolExecutor(self.config.cpu_threads, thread_name_prefix="harvest-cpu")
        if self.config.redis is not None:
            self._global = GlobalPoliteness(redis_connection(self.config.redis), self.config.harvest_id,
                                            self.options.per_domain, self.config.settings.politeness_lease_s)
            renewing = asyncio.create_task(self._renew_leases(self._global))
            self._tasks.add(renewing)
        try:
            async with self._web_session() as web, self._storage_session() as s3:
                self._web = web
                self._sink = ImageSink(self.store, s3, self.config.store_concurrency)
                try:
                    await self._dispatch()
                finally:
                    await self._stop_tasks()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            if self._global is not None:
                await self._give_back(self._global)
                self._global.close()
                logger.info("harvest %s: politeness in Redis: %d round trips for %d requests",
                            self.config.harvest_id, self._global.round_trips, self._global.granted)
        if self._failure is not None:
            raise self._failure

    async def _dispatch(self) -> None:
        rotation = 0
        while not self._cancelled and not (self._finishing and self._outstanding == 0):
            self._wake.clear()
            now = time.monotonic()
            gates = [gate for gate in self._gates.values() if gate.queue]
            if gates:
                rotation = (rotation + 1) % len(gates)
                gates = gates[rotation:] + gates[:rotation]
            for gate in gates:
                if gate.given_up:
                    self._fail_domain(gate)
            gates = [gate for gate in gates if not gate.given_up]
            if self._global is None:
                for gate in gates:
                    while self._has_room() and gate.ready(now):
                        self._launch(gate, gate.queue.popleft())
                next_time = None
            else:
                next_time = await self._launch_granted(self._global, gates, now)
            for gate in gates:
                if gate.queue and gate.not_before > now:
                    next_time = gate.not_before if next_time is None else min(next_time, gate.not_before)
            timeout = None if next_time is None else max(0.005, next_time - time.monotonic())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _launch_granted(self, politeness: GlobalPoliteness, gates: list[DomainGate], now: float) -> float | None:
        """One round trip to Redis for this turn: the leases answered since the last one go back, and every
        ready domain asks for the slots it could use; launch what was granted. Returns when to look again if
        some domain is held back by other workers (or paused by one)."""
        asks: dict[str, Exchange] = {}
        room = self.config.concurrency - self._in_flight
        memory = 2 * self.config.concurrency - self._in_flight - self._processing
        for gate in gates:
            want = min(len(gate.queue), gate.allowed - gate.in_flight, room, memory)
            if want > 0 and gate.ready(now):
                asks[gate.name] = Exchange(want=want, cap=gate.allowed)
                room, memory = room - want, memory - want
        releases, self._releases = self._releases, {}
        for domain, leases in releases.items():
            asks.setdefault(domain, Exchange(cap=self._gate(domain).allowed)).releases = leases
        if not asks:
            return None
        try:
            grants = await politeness.exchange(asks)
        except Exception as exc:  # noqa: BLE001 - the leases given back expire by themselves; this AIMD step is lost
            logger.warning("harvest %s: politeness in Redis failed: %s", self.config.harvest_id, exc)
            return time.monotonic() + _GLOBAL_POLL_S
        next_time: float | None = None
        for domain, grant in grants.items():
            gate = self._gates[domain]
            for token in grant.tokens:
                task = gate.queue.popleft()
                self._leases[task.image_id] = (domain, token)
                self._launch(gate, task)
            if not grant.tokens and asks[domain].want > 0:
                # paused (Retry-After, a park seen by another worker) or every slot taken by other workers
                again = time.monotonic() + (grant.wait_s if grant.wait_s > 0 else _GLOBAL_POLL_S)
                next_time = again if next_time is None else min(next_time, again)
        return next_time

    def _release(self, gate: DomainGate, task: RowTask, event: Event, pause_s: float = 0.0) -> None:
        """The request's slot back. Its global lease goes back to Redis, with what its answer said, at the
        dispatch loop's next turn, in the same step (per domain, atomic) as that turn's acquire: the loop never
        asks Redis for the slot again before Redis has it free."""
        gate.in_flight -= 1
        lease = self._leases.pop(task.image_id, None)
        if lease is not None and self._global is not None:
            self._releases.setdefault(gate.name, []).append((lease[1], event, pause_s))
            self._wake.set()

    async def _give_back(self, politeness: GlobalPoliteness) -> None:
        """On the way out: the leases still held or answered go back now rather than at their expiry."""
        for domain, token in self._leases.values():
            self._releases.setdefault(domain, []).append((token, Event.none, 0.0))
        self._leases.clear()
        releases, self._releases = self._releases, {}
        if not releases:
            return
        try:
            await politeness.exchange({domain: Exchange(releases=leases) for domain, leases in releases.items()})
        except Exception as exc:  # noqa: BLE001 - they expire by themselves
            logger.warning("harvest %s: giving politeness leases back failed: %s", self.config.harvest_id, exc)

    async def _renew_leases(self, politeness: GlobalPoliteness) -> None:
        """Keep the leases of the requests in flight alive, a few times per lease lifetime."""
        while True:
            await asyncio.sleep(politeness.lease_ms / 3000)
            held: dict[str, list[str]] = {}
            for domain, token in self._leases.values():
                held.setdefault(domain, []).append(token)
            try:
                await politeness.renew(held)
            except Exception as exc:  # noqa: BLE001 - Redis away for a moment: the next tick tries again
                logger.warning("harvest %s: politeness lease renewal failed: %s", self.config.harvest_id, exc)

    def _observe(self, gate: DomainGate, fetched: Fetched, now: float, backoff: float) -> tuple[Event, float]:
        """What the answer says about its domain, to its gate; returns it for the global limits."""
        parks = gate.parks
        if fetched.outcome is Outcome.retry and fetched.throttled:
            pause = fetched.retry_after_s if fetched.retry_after_s is not None else backoff
            gate.on_throttle(now, pause)
            return Event.throttle, pause
        if fetched.outcome is Outcome.ok:
            gate.on_success(fetched.elapsed_s)
            return Event.ok, 0.0
        if fetched.outcome in (Outcome.retry, Outcome.failed):
            gate.on_failure(now, host_trouble=fetched.host_trouble)
            if gate.parks > parks:  # this failure opened the circuit: every worker pauses the domain
                return Event.park, max(0.0, gate.not_before - now)
            return (Event.trouble if fetched.host_trouble else Event.none), 0.0
        return Event.none, 0.0

    def _gate(self, domain: str) -> DomainGate:
        gate = self._gates.get(domain)
        if gate is None:
            options = self.options
            gate = self._gates[domain] = DomainGate(
                domain, options.per_domain, options.breaker_failures, options.park_s, options.max_parks)
        return gate

    def _has_room(self) -> bool:
        """A free network slot, and not too many fetched images waiting for the CPU (memory stays bounded).

        A row gives its network slot back as soon as its bytes are in, so fetching goes on while the pool
        decodes: the network and the CPU are busy at the same time instead of taking turns."""
        concurrency = self.config.concurrency
        return self._in_flight < concurrency and self._in_flight + self._processing < 2 * concurrency

    def _launch(self, gate: DomainGate, task: RowTask) -> None:
        gate.in_flight += 1
        self._in_flight += 1
        running = asyncio.create_task(self._handle(gate, task))
        self._tasks.add(running)
        running.add_done_callback(self._tasks.discard)

    async def _handle(self, gate: DomainGate, task: RowTask) -> None:
        result = await self._outcome(gate, task)
        if result is not None:  # None: it will be retried
            self._done(task, result)

    async def _outcome(self, gate: DomainGate, task: RowTask) -> RowResult | None:
        holding_slot = True
        try:
            try:
                fetched = await fetch_image(self._web, task.url, self.limits, self.config.blacklist)
            except BaseException:
                self._release(gate, task, Event.none)
                raise
            now = time.monotonic()
            backoff = self._backoff(task.attempts)
            event, pause = self._observe(gate, fetched, now, backoff)
            self._release(gate, task, event, pause)
            if fetched.outcome is Outcome.retry:
                if task.attempts < self.options.retries and not gate.given_up:
                    task.attempts += 1
                    self._in_flight -= 1
                    holding_slot = False
                    self._retry_later(gate, task, max(backoff, fetched.retry_after_s or 0.0))
                    return None
                detail = fetched.error or "transient error"
                error = f"{detail}{'; ' if ':' in detail else ': '}after {task.attempts + 1} attempts"
                if gate.given_up:
                    error = f"domain-unreachable: {fetched.error}; gave up after {gate.parks - 1} parks"
                return RowResult(image_id=task.image_id, status=HarvestStatus.failed, error=error)
            if fetched.outcome is not Outcome.ok:
                return RowResult(image_id=task.image_id, status=HarvestStatus(fetched.outcome.value),
                                 error=fetched.error)
            self._in_flight -= 1
            holding_slot = False
            self._processing += 1
            self._wake.set()
            try:
                return await self._normalise_and_store(task, fetched.data)
            finally:
                self._processing -= 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one row's surprise must not stop the harvest
            logger.exception("harvest %s: row %s failed unexpectedly", self.config.harvest_id, task.image_id)
            return RowResult(image_id=task.image_id, status=HarvestStatus.failed,
                             error=f"internal: {type(exc).__name__}: {str(exc)[:160]}")
        finally:
            if holding_slot:
                self._in_flight -= 1
            self._wake.set()

    async def _normalise_and_store(self, task: RowTask, data: bytes) -> RowResult:
        loop = asyncio.get_running_loop()
        image: Normalised = await loop.run_in_executor(self._pool, normalise, data, self.policy)
        if image.status != HarvestStatus.ok or image.sha256 is None:
            return RowResult(image_id=task.image_id, status=HarvestStatus(image.status), error=image.error,
                             width=image.width, height=image.height)
        key, _created = await self._sink.put(image.sha256, image.data)
        return RowResult(image_id=task.image_id, status=HarvestStatus.ok, sha256=image.sha256, bytes=len(image.data),
                         width=image.width, height=image.height, storage_key=key)

    def _done(self, task: RowTask, result: RowResult) -> None:
        self._outstanding -= 1
        self._wake.set()
        try:
            self.report(task, result)
        except Exception as exc:  # the harvest could not take it: stop, and run() raises it
            logger.exception("harvest %s: reporting row %s failed", self.config.harvest_id, task.image_id)
            self._failure = self._failure or exc
            self.cancel()

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
            self._done(task, RowResult(image_id=task.image_id, status=HarvestStatus.failed,
                                       error=f"domain-unreachable: {gate.name} parked {gate.max_parks} times"))

    async def _stop_tasks(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for running in list(self._tasks):
            running.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ resources
    def _web_session(self) -> aiohttp.ClientSession:
        settings = self.config.settings
        resolver = GuardedResolver(settings.resolve, settings.allow_loopback)
        connector = aiohttp.TCPConnector(resolver=resolver, limit=self.config.concurrency, limit_per_host=0,
                                         ttl_dns_cache=300, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.options.total_timeout_s, connect=self.options.connect_timeout_s,
                                        sock_read=self.options.read_timeout_s)
        return aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False,
                                     cookie_jar=aiohttp.DummyCookieJar(),
                                     headers={"User-Agent": settings.user_agent, "Accept": "image/*"})

    def _storage_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.config.store_concurrency)
        return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120), trust_env=False)
