"""Prometheus figures of the long jobs (harvests, curations, training runs), kept in Redis between scrapes.

The work runs in RQ worker processes, possibly on other hosts, never in the API process that serves ``/metrics``.
So a worker writes its counters and gauges to Redis (:class:`JobMetrics`: one hash per metric, one field per label
set; HINCRBYFLOAT for a counter, HSET for a gauge; a batch of updates is one round trip), and the API reads them
back when it is scraped (:class:`JobMetricsCollector`, registered into the service's ``HttpMetrics.registry``),
with the depth, started and failed jobs and workers of the RQ queues the service owns.

Labels are bounded: a metric declares each label's possible values, and any other value is written as ``other``.
A job id, a URL or a domain is never a label. The figures belong to the whole deployment, not to one process:
every replica of a service reports the same numbers (aggregate them with ``max``, not ``sum``).

A scrape never fails because Redis is away: the collector then reports ``sporeprint_redis_up 0`` and nothing else
from Redis (short socket timeouts, no retries). A worker's write that fails is logged and dropped: metrics never
stop a job.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from rq import Worker, get_current_job

from shared.queue import QueueName, get_queue, redis_connection
from shared.settings import Settings, get_settings

logger = logging.getLogger(__name__)

KEY_PREFIX = "sporeprint:metrics"
OTHER = "other"  # the value of a label that is not among its declared values
REDIS_UP = "sporeprint_redis_up"
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class MetricKind(StrEnum):
    counter = "counter"
    gauge = "gauge"


@dataclass(frozen=True)
class Label:
    """A label and the values it may take (plus ``other``, for anything else)."""

    name: str
    values: frozenset[str]

    def bound(self, value: str) -> str:
        return value if value in self.values else OTHER


@dataclass(frozen=True)
class JobMetric:
    """One metric the workers write and the API exposes. ``name`` is the Prometheus name (a counter's without
    ``_total``: the exposition adds it)."""

    name: str
    documentation: str
    kind: MetricKind
    labels: tuple[Label, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or (self.kind is MetricKind.counter and self.name.endswith("_total")):
            raise ValueError(f"not a metric name: {self.name!r}")

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    def field(self, labels: Mapping[str, str]) -> str:
        """The hash field of one label set: its bounded values, in the declared order, as a JSON list."""
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, not {tuple(labels)}")
        return json.dumps([label.bound(str(labels[label.name])) for label in self.labels])


def counter(name: str, documentation: str, *labels: Label) -> JobMetric:
    return JobMetric(name, documentation, MetricKind.counter, labels)


def gauge(name: str, documentation: str, *labels: Label) -> JobMetric:
    return JobMetric(name, documentation, MetricKind.gauge, labels)


def metric_key(metric: JobMetric, prefix: str = KEY_PREFIX) -> str:
    return f"{prefix}:{metric.name}"


class MetricBatch:
    """Updates collected in the worker and sent together: increments of one series add up here first."""

    def __init__(self) -> None:
        self.increments: dict[tuple[JobMetric, str], float] = {}
        self.values: dict[tuple[JobMetric, str], float] = {}

    def incr(self, metric: JobMetric, amount: float = 1.0, labels: Mapping[str, str] | None = None) -> None:
        if metric.kind is not MetricKind.counter:
            raise TypeError(f"{metric.name} is a {metric.kind}, not a counter")
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"a counter only goes up by a finite amount, not {amount}")
        key = (metric, metric.field(labels or {}))
        self.increments[key] = self.increments.get(key, 0.0) + amount

    def set(self, metric: JobMetric, value: float, labels: Mapping[str, str] | None = None) -> None:
        if metric.kind is not MetricKind.gauge:
            raise TypeError(f"{metric.name} is a {metric.kind}, not a gauge")
        self.values[(metric, metric.field(labels or {}))] = float(value)

    def __bool__(self) -> bool:
        return bool(self.increments or self.values)


class JobMetrics:
    """The workers' side: writes metrics to Redis. With no connection (code run outside an RQ job, e.g. in a
    test) every write is a no-op, as ``report_progress`` is."""

    def __init__(self, connection: Redis | None, prefix: str = KEY_PREFIX) -> None:
        self.connection = connection
        self.prefix = prefix

    @classmethod
    def for_current_job(cls) -> JobMetrics:
        """Metrics written through the current RQ job's connection (none outside a job)."""
        job = get_current_job()
        return cls(job.connection if job is not None else None)

    def incr(self, metric: JobMetric, amount: float = 1.0, labels: Mapping[str, str] | None = None) -> None:
        with self.batch() as batch:
            batch.incr(metric, amount, labels)

    def set(self, metric: JobMetric, value: float, labels: Mapping[str, str] | None = None) -> None:
        with self.batch() as batch:
            batch.set(metric, value, labels)

    @contextmanager
    def batch(self) -> Iterator[MetricBatch]:
        """``with metrics.batch() as batch: batch.incr(...); batch.set(...)``: one round trip at the end."""
        batch = MetricBatch()
        yield batch
        self.write(batch)

    def write(self, batch: MetricBatch) -> None:
        if self.connection is None or not batch:
            return
        pipe = self.connection.pipeline(transaction=False)
        for (metric, field), amount in batch.increments.items():
            pipe.hincrbyfloat(metric_key(metric, self.prefix), field, amount)
        for (metric, field), value in batch.values.items():
            pipe.hset(metric_key(metric, self.prefix), field, repr(value))
        try:
            pipe.execute()
        except (RedisError, OSError) as exc:  # metrics never stop a job
            logger.warning("job metrics not written (%d series): %s", len(batch.increments) + len(batch.values), exc)


RedisSource = Callable[[], Redis]


class ScrapeConnection:
    """The Redis connection a scrape reads through, made on first use from the process's settings: short socket
    timeouts and no retries, so that a scrape with Redis away answers at once (``sporeprint_redis_up 0``)."""

    def __init__(self, settings: Callable[[], Settings] = get_settings, timeout_s: float = 1.0) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._connection: Redis | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Redis:
        with self._lock:
            if self._connection is None:
                self._connection = redis_connection(self._settings(), timeout_s=self._timeout_s)
            return self._connection


QUEUE_FIGURES: tuple[tuple[str, str], ...] = (
    ("sporeprint_rq_queued_jobs", "jobs waiting on the RQ queue (its depth)"),
    ("sporeprint_rq_started_jobs", "jobs a worker of the RQ queue is running (started registry)"),
    ("sporeprint_rq_failed_jobs", "failed jobs kept in the RQ queue's failed registry"),
    ("sporeprint_rq_workers", "RQ workers listening on the queue"),
)


class JobMetricsCollector(Collector):
    """The API's side: at each scrape, reads ``metrics`` from Redis (one round trip) and the figures of
    ``queues``, and yields them as Prometheus families, with ``sporeprint_redis_up``."""

    def __init__(self, connect: RedisSource, metrics: Sequence[JobMetric], queues: Sequence[QueueName] = (),
                 prefix: str = KEY_PREFIX) -> None:
        self.connect = connect
        self.metrics = tuple(metrics)
        self.queues = tuple(queues)
        self.prefix = prefix
        self._was_up = True

    def describe(self) -> Iterable[Metric]:
        """The families' names (so that the registry refuses a clash) without reading Redis."""
        yield GaugeMetricFamily(REDIS_UP, "1 when Redis answered this scrape")
        for metric in self.metrics:
            yield self._family(metric)
        for name, documentation in QUEUE_FIGURES if self.queues else ():
            yield GaugeMetricFamily(name, documentation, labels=["queue"])

    def collect(self) -> Iterable[Metric]:
        try:
            connection = self.connect()
            stored = self._read(connection)
            queues = self._queue_figures(connection)
        except (RedisError, OSError) as exc:
            if self._was_up:
                logger.warning("metrics: Redis does not answer (%s); reporting %s 0", exc, REDIS_UP)
            self._was_up = False
            yield GaugeMetricFamily(REDIS_UP, "1 when Redis answered this scrape", value=0)
            return
        self._was_up = True
        yield GaugeMetricFamily(REDIS_UP, "1 when Redis answered this scrape", value=1)
        for metric, fields in zip(self.metrics, stored, strict=True):
            family = self._family(metric)
            for labels, value in _series(metric, fields):
                family.add_metric(labels, value)
            yield family
        for index, (name, documentation) in enumerate(QUEUE_FIGURES if self.queues else ()):
            family = GaugeMetricFamily(name, documentation, labels=["queue"])
            for queue, figures in zip(self.queues, queues, strict=True):
                family.add_metric([queue.value], figures[index])
            yield family

    def _family(self, metric: JobMetric) -> CounterMetricFamily | GaugeMetricFamily:
        kind = CounterMetricFamily if metric.kind is MetricKind.counter else GaugeMetricFamily
        return kind(metric.name, metric.documentation, labels=list(metric.label_names))

    def _read(self, connection: Redis) -> list[dict[bytes, bytes]]:
        if not self.metrics:
            connection.ping()
            return []
        pipe = connection.pipeline(transaction=False)
        for metric in self.metrics:
            pipe.hgetall(metric_key(metric, self.prefix))
        return list(pipe.execute())

    def _queue_figures(self, connection: Redis) -> list[tuple[int, int, int, int]]:
        figures = []
        for name in self.queues:
            queue = get_queue(name, connection)
            figures.append((queue.count, queue.started_job_registry.get_job_count(cleanup=False),
                            queue.failed_job_registry.get_job_count(cleanup=False), Worker.count(queue=queue)))
        return figures


def _series(metric: JobMetric, fields: Mapping[bytes, bytes]) -> Iterator[tuple[list[str], float]]:
    """The stored label sets and values of ``metric``, skipping fields another version's labels wrote."""
    for raw_field, raw_value in sorted(fields.items()):
        try:
            labels = json.loads(raw_field)
            value = float(raw_value)
        except ValueError:
            continue
        if isinstance(labels, list) and len(labels) == len(metric.labels):
            yield [str(label) for label in labels], value
