"""The downloader's own Prometheus metrics, beside the request metrics every service has: what the harvests
did (written to Redis by the workers that run them: ``shared.job_metrics``) and the ``harvest`` queue.

Images per second is ``rate(sporeprint_harvest_images_stored_total[5m])``; see deploy/prometheus/README.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.downloader.harvest.engine import reason_of
from services.downloader.harvest.state import RowResult
from shared.job_metrics import JobMetrics, JobMetricsCollector, Label, RedisSource, ScrapeConnection, counter
from shared.metrics import HttpMetrics
from shared.queue import JobState, QueueName
from shared.schemas import HarvestStatus

# Why rows fail, as the fetch, the fetch loop and the image check write it (``reason: detail``); an HTTP status
# counts by its class. Anything else is "other".
FAILURE_REASONS = frozenset({
    "http-3xx", "http-4xx", "http-5xx", "timeout", "connection", "short-body", "too-many-redirects",
    "unsupported-url", "blocked-address", "too-large", "domain-unreachable", "not-an-image", "empty",
    "too-many-pixels", "undecodable", "internal",
})
SKIP_REASONS = frozenset({"blacklisted", "noai", "too-small", "class-cap", "class-filter"})
ENDED_STATES = frozenset({JobState.completed.value, JobState.cancelled.value, JobState.failed.value})

IMAGES_STORED = counter("sporeprint_harvest_images_stored", "images fetched, validated and stored by harvests")
BYTES_STORED = counter("sporeprint_harvest_bytes_stored", "bytes of the images harvests stored (after resizing)")
ROWS = counter("sporeprint_harvest_rows", "manifest rows harvests fetched to an end: stored, failed or skipped")
FAILURES = counter("sporeprint_harvest_failures", "rows that failed, by reason", Label("reason", FAILURE_REASONS))
SKIPS = counter("sporeprint_harvest_skips", "rows skipped while fetching (blacklisted redirect, noai, too small), "
                "by reason", Label("reason", SKIP_REASONS))
HARVEST_JOBS = counter("sporeprint_harvest_jobs", "harvest job runs that ended, by state (each attempt counts)",
                       Label("state", ENDED_STATES))
HARVEST_METRICS = (IMAGES_STORED, BYTES_STORED, ROWS, FAILURES, SKIPS, HARVEST_JOBS)


class DownloaderMetrics(HttpMetrics):
    def __init__(self, connect: RedisSource | None = None) -> None:
        super().__init__("downloader")
        self.registry.register(JobMetricsCollector(connect or ScrapeConnection(), HARVEST_METRICS,
                                                   (QueueName.harvest,)))


def failure_reason(error: str | None) -> str:
    reason = reason_of(error)
    if reason.startswith("http-") and reason[5:].isdigit() and len(reason) == 8:
        return f"http-{reason[5]}xx"
    return reason


class HarvestRecorder:
    """What a harvest's worker writes: the rows of each checkpoint (one Redis round trip per checkpoint, a few
    seconds apart, never per image) and the end of the run."""

    def __init__(self, metrics: JobMetrics) -> None:
        self.metrics = metrics

    def checkpointed(self, results: Sequence[RowResult]) -> None:
        with self.metrics.batch() as batch:
            batch.incr(ROWS, len(results))
            for result in results:
                if result.status == HarvestStatus.ok:
                    batch.incr(IMAGES_STORED)
                    batch.incr(BYTES_STORED, result.bytes or 0)
                elif result.status == HarvestStatus.failed:
                    batch.incr(FAILURES, labels={"reason": failure_reason(result.error)})
                elif result.status == HarvestStatus.skipped:
                    batch.incr(SKIPS, labels={"reason": reason_of(result.error)})

    def ended(self, state: JobState) -> None:
        self.metrics.incr(HARVEST_JOBS, labels={"state": state.value})
