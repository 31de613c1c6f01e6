"""The curator's own Prometheus metrics, beside the request metrics every service has: what the curations did
(written to Redis by the workers that run them: ``shared.job_metrics``) and the ``curate`` queue.

Throughput is rows per second of curation: ``rate(sporeprint_curation_rows_total[1h])
/ rate(sporeprint_curation_seconds_total[1h])``; see deploy/prometheus/README.md.
"""

from __future__ import annotations

import time

from services.curator.curation import CurationReport
from shared.job_metrics import JobMetrics, JobMetricsCollector, Label, RedisSource, ScrapeConnection, counter
from shared.metrics import HttpMetrics
from shared.queue import JobState, QueueName
from shared.schemas import ExclusionReason

ENDED_STATES = frozenset({JobState.completed.value, JobState.failed.value})

ROWS = counter("sporeprint_curation_rows", "manifest rows curations decided on")
INCLUDED = counter("sporeprint_curation_rows_included", "rows curations kept")
EXCLUDED = counter("sporeprint_curation_rows_excluded", "rows curations dropped, by reason",
                   Label("reason", frozenset(reason.value for reason in ExclusionReason)))
IMAGES_SCORED = counter("sporeprint_curation_images_scored", "harvested images judged, by where their analysis "
                        "came from (analysed now, or the cache)", Label("source", frozenset({"analysed", "cached"})))
SECONDS = counter("sporeprint_curation_seconds", "wall time curation jobs ran, ended or failed")
CURATION_JOBS = counter("sporeprint_curation_jobs", "curation jobs that ended, by state",
                        Label("state", ENDED_STATES))
CURATION_METRICS = (ROWS, INCLUDED, EXCLUDED, IMAGES_SCORED, SECONDS, CURATION_JOBS)


class CuratorMetrics(HttpMetrics):
    def __init__(self, connect: RedisSource | None = None) -> None:
        super().__init__("curator")
        self.registry.register(JobMetricsCollector(connect or ScrapeConnection(), CURATION_METRICS,
                                                   (QueueName.curate,)))


class CurationRecorder:
    """What a curation's worker writes when the curation ends (one Redis round trip); the clock starts when the
    recorder is made."""

    def __init__(self, metrics: JobMetrics) -> None:
        self.metrics = metrics
        self.started = time.monotonic()

    def ended(self, state: JobState, report: CurationReport | None = None) -> None:
        with self.metrics.batch() as batch:
            batch.incr(CURATION_JOBS, labels={"state": state.value})
            batch.incr(SECONDS, time.monotonic() - self.started)
            if report is not None:
                batch.incr(ROWS, report.rows)
                batch.incr(INCLUDED, report.included)
                for reason, count in report.excluded.items():
                    batch.incr(EXCLUDED, count, labels={"reason": reason})
                batch.incr(IMAGES_SCORED, report.analysed, labels={"source": "analysed"})
                batch.incr(IMAGES_SCORED, report.reused, labels={"source": "cached"})
