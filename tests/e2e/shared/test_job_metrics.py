"""Job metrics through the session's real Redis: what workers write (shared.job_metrics and each service's
recorder) is what the service's /metrics collector reads back, with the RQ queue figures.

These tests use their own Redis database (queue names are fixed, and other tests use the queues of db 0) and
clear the keys they read before each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Worker

from services.curator.curation import CurationReport
from services.curator.metrics import CURATION_METRICS, CurationRecorder, CuratorMetrics
from services.downloader.harvest.state import RowResult
from services.downloader.metrics import HARVEST_METRICS, DownloaderMetrics, HarvestRecorder
from services.trainer.metrics import TRAINING_METRICS, TrainerMetrics, TrainingRecorder
from shared.job_metrics import JobMetrics, JobMetricsCollector, Label, counter, gauge, metric_key
from shared.metrics import HttpMetrics
from shared.queue import JobSerializer, JobState, QueueName, enqueue, get_queue, redis_connection
from shared.schemas import HarvestStatus
from shared.settings import Settings
from sporeprint.stack import StackState
from tests.conftest import make_settings

pytestmark = pytest.mark.e2e

METRICS_DB = 7
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(metrics: HttpMetrics) -> Samples:
    """Every sample of a scrape, by (sample name, sorted labels)."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(metrics.render().decode()) for sample in family.samples}


@pytest.fixture(scope="module")
def db_settings(stack: StackState) -> Settings:
    settings = make_settings(stack, "unused")
    return settings.model_copy(update={"redis_url": settings.redis_url.rsplit("/", 1)[0] + f"/{METRICS_DB}"})


@pytest.fixture
def connection(db_settings: Settings) -> Iterator[Redis]:
    redis = redis_connection(db_settings)
    keys = [metric_key(metric) for metric in (*HARVEST_METRICS, *CURATION_METRICS, *TRAINING_METRICS)]
    redis.delete(*keys)
    for name in QueueName:
        get_queue(name, redis).empty()
    try:
        yield redis
    finally:
        redis.close()


def test_counters_and_gauges_round_trip_with_bounded_labels(connection: Redis) -> None:
    prefix = "sporeprint:test-metrics:round-trip"
    rows = counter("sporeprint_test_rows", "rows", Label("status", frozenset({"ok", "failed"})))
    loss = gauge("sporeprint_test_loss", "loss")
    connection.delete(metric_key(rows, prefix), metric_key(loss, prefix))
    writer = JobMetrics(connection, prefix)
    with writer.batch() as batch:
        for status in ("ok", "ok", "failed", "https://example.org/leaked-url"):
            batch.incr(rows, labels={"status": status})
        batch.set(loss, 0.75)
    writer.incr(rows, 2.5, labels={"status": "ok"})
    writer.set(loss, 0.5)

    registry = CollectorRegistry()
    registry.register(JobMetricsCollector(lambda: connection, [rows, loss], prefix=prefix))
    families = {family.name: family for family in
                text_string_to_metric_families(generate_latest(registry).decode())}
    assert families["sporeprint_test_rows"].type == "counter"
    assert {(s.name, s.labels["status"]): s.value for s in families["sporeprint_test_rows"].samples} == {
        ("sporeprint_test_rows_total", "ok"): 4.5, ("sporeprint_test_rows_total", "failed"): 1.0,
        ("sporeprint_test_rows_total", "other"): 1.0}
    assert [(s.name, s.value) for s in families["sporeprint_test_loss"].samples] == [("sporeprint_test_loss", 0.5)]
    assert [s.value for s in families["sporeprint_redis_up"].samples] == [1.0]


def test_queue_depth_started_failed_and_workers_per_queue(connection: Redis) -> None:
    queue = get_queue(QueueName.harvest, connection)
    jobs = [enqueue(connection, QueueName.harvest, print, n, job_id=f"metrics-test-{n}", timeout_s=60, keep_s=60)
            for n in range(3)]
    queue.failed_job_registry.add(jobs[0], ttl=60)
    worker = Worker([queue], connection=connection, name="metrics-test-worker", serializer=JobSerializer)
    worker.register_birth()
    try:
        scraped = samples(DownloaderMetrics(lambda: connection))
    finally:
        worker.register_death()
        queue.failed_job_registry.remove(jobs[0])
        queue.empty()
    harvest = (("queue", "harvest"),)
    assert scraped[("sporeprint_rq_queued_jobs", harvest)] == 3
    assert scraped[("sporeprint_rq_started_jobs", harvest)] == 0
    assert scraped[("sporeprint_rq_failed_jobs", harvest)] == 1
    assert scraped[("sporeprint_rq_workers", harvest)] == 1
    assert scraped[("sporeprint_redis_up", ())] == 1
    assert not any(labels == (("queue", "train"),) for _, labels in scraped)  # each service: its own queue


def test_a_harvest_recorder_counts_stored_failed_and_skipped_rows(connection: Redis) -> None:
    recorder = HarvestRecorder(JobMetrics(connection))
    recorder.checkpointed([
        RowResult(image_id="a", status=HarvestStatus.ok, bytes=1000),
        RowResult(image_id="b", status=HarvestStatus.ok, bytes=500),
        RowResult(image_id="c", status=HarvestStatus.failed, error="http-404"),
        RowResult(image_id="d", status=HarvestStatus.failed, error="timeout: after 3 attempts"),
        RowResult(image_id="e", status=HarvestStatus.failed, error="something new: detail"),
        RowResult(image_id="f", status=HarvestStatus.skipped, error="noai: X-Robots-Tag"),
    ])
    recorder.checkpointed([RowResult(image_id="g", status=HarvestStatus.ok, bytes=250)])
    recorder.ended(JobState.completed)
    scraped = samples(DownloaderMetrics(lambda: connection))
    assert scraped[("sporeprint_harvest_images_stored_total", ())] == 3
    assert scraped[("sporeprint_harvest_bytes_stored_total", ())] == 1750
    assert scraped[("sporeprint_harvest_rows_total", ())] == 7
    assert scraped[("sporeprint_harvest_failures_total", (("reason", "http-4xx"),))] == 1
    assert scraped[("sporeprint_harvest_failures_total", (("reason", "timeout"),))] == 1
    assert scraped[("sporeprint_harvest_failures_total", (("reason", "other"),))] == 1
    assert scraped[("sporeprint_harvest_skips_total", (("reason", "noai"),))] == 1
    assert scraped[("sporeprint_harvest_jobs_total", (("state", "completed"),))] == 1


def test_a_curation_recorder_counts_rows_kept_dropped_and_seconds(connection: Redis) -> None:
    report = CurationReport(rows=10, included=6, excluded={"blacklisted": 1, "irrelevant": 2, "duplicate": 1},
                            by_domain={}, cross_observation_duplicates=0, analysed=7, reused=2, filter="test",
                            blacklist_revision=1, labels_used=0)
    CurationRecorder(JobMetrics(connection)).ended(JobState.completed, report)
    CurationRecorder(JobMetrics(connection)).ended(JobState.failed)
    scraped = samples(CuratorMetrics(lambda: connection))
    assert scraped[("sporeprint_curation_rows_total", ())] == 10
    assert scraped[("sporeprint_curation_rows_included_total", ())] == 6
    assert scraped[("sporeprint_curation_rows_excluded_total", (("reason", "irrelevant"),))] == 2
    assert scraped[("sporeprint_curation_images_scored_total", (("source", "analysed"),))] == 7
    assert scraped[("sporeprint_curation_images_scored_total", (("source", "cached"),))] == 2
    assert scraped[("sporeprint_curation_seconds_total", ())] > 0
    assert scraped[("sporeprint_curation_jobs_total", (("state", "failed"),))] == 1
    assert ("sporeprint_rq_queued_jobs", (("queue", "curate"),)) in scraped


def test_a_training_recorder_keeps_the_last_epoch(connection: Redis) -> None:
    recorder = TrainingRecorder(JobMetrics(connection))
    before = datetime.now(UTC).timestamp()
    recorder.epoch({"epoch": 1, "phase": "head", "loss": 1.2, "accuracy": 0.4, "val_loss": 1.3,
                    "val_accuracy": 0.35, "learning_rate": 1e-3}, 2.0, 100)
    recorder.epoch({"epoch": 2, "phase": "fine_tune", "loss": 0.8, "accuracy": 0.7, "val_loss": 0.9,
                    "val_accuracy": 0.6, "learning_rate": 1e-4}, 4.0, 100)
    recorder.ended(JobState.cancelled)
    scraped = samples(TrainerMetrics(lambda: connection))
    assert scraped[("sporeprint_training_epoch", ())] == 2
    assert scraped[("sporeprint_training_loss", ())] == pytest.approx(0.8)
    assert scraped[("sporeprint_training_val_accuracy", ())] == pytest.approx(0.6)
    assert scraped[("sporeprint_training_learning_rate", ())] == pytest.approx(1e-4)
    assert scraped[("sporeprint_training_images_per_second", ())] == pytest.approx(25)
    assert scraped[("sporeprint_training_last_epoch_timestamp_seconds", ())] >= before
    assert scraped[("sporeprint_training_epochs_total", (("phase", "head"),))] == 1
    assert scraped[("sporeprint_training_epochs_total", (("phase", "fine_tune"),))] == 1
    assert scraped[("sporeprint_training_jobs_total", (("state", "cancelled"),))] == 1
    assert scraped[("sporeprint_rq_workers", (("queue", "train"),))] == 0
