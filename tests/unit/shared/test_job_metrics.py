"""Job metrics without a Redis that answers: label sets stay bounded, updates add up before they are sent, and a
scrape with Redis away (refused, or silent) answers at once with ``sporeprint_redis_up 0`` and nothing else."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.downloader.metrics import DownloaderMetrics, failure_reason
from shared.job_metrics import (
    OTHER,
    JobMetric,
    JobMetrics,
    JobMetricsCollector,
    Label,
    MetricBatch,
    MetricKind,
    ScrapeConnection,
    counter,
    gauge,
)
from shared.queue import QueueName
from shared.settings import Settings
from sporeprint.processes import free_port

pytestmark = pytest.mark.unit

FAILURES = counter("sporeprint_test_failures", "failures", Label("reason", frozenset({"timeout", "http-4xx"})))
LOSS = gauge("sporeprint_test_loss", "loss")


def test_label_values_outside_the_declared_set_become_other() -> None:
    assert FAILURES.field({"reason": "timeout"}) == '["timeout"]'
    assert FAILURES.field({"reason": "https://example.org/a.jpg"}) == f'["{OTHER}"]'
    with pytest.raises(ValueError, match="takes labels"):
        FAILURES.field({"url": "x"})
    with pytest.raises(ValueError, match="takes labels"):
        FAILURES.field({})


def test_names_are_prometheus_names_and_counters_get_total_from_the_exposition() -> None:
    with pytest.raises(ValueError):
        JobMetric("sporeprint_rows_total", "x", MetricKind.counter)
    with pytest.raises(ValueError):
        JobMetric("not a name", "x", MetricKind.gauge)


def test_a_batch_adds_up_increments_and_keeps_the_last_gauge_value() -> None:
    batch = MetricBatch()
    for reason in ("timeout", "timeout", "weird", "http-4xx"):
        batch.incr(FAILURES, labels={"reason": reason})
    batch.set(LOSS, 2.0)
    batch.set(LOSS, 1.5)
    assert batch.increments == {(FAILURES, '["timeout"]'): 2.0, (FAILURES, '["other"]'): 1.0,
                                (FAILURES, '["http-4xx"]'): 1.0}
    assert batch.values == {(LOSS, "[]"): 1.5}
    with pytest.raises(ValueError):
        batch.incr(FAILURES, -1, labels={"reason": "timeout"})
    with pytest.raises(TypeError):
        batch.set(FAILURES, 1, labels={"reason": "timeout"})
    with pytest.raises(TypeError):
        batch.incr(LOSS)


def test_without_a_connection_writes_are_no_ops() -> None:
    JobMetrics(None).incr(FAILURES, labels={"reason": "timeout"})  # code run outside an RQ job


@pytest.mark.parametrize(("error", "reason"), [
    ("http-404", "http-4xx"), ("http-503: after 3 attempts", "http-5xx"), ("timeout: after 2 attempts", "timeout"),
    ("connection: ClientConnectorError: refused; after 3 attempts", "connection"),
    ("domain-unreachable: timeout; gave up after 2 parks", "domain-unreachable"),
    ("not-an-image: unknown magic bytes", "not-an-image"), (None, "unknown"),
])
def test_harvest_failure_reasons(error: str | None, reason: str) -> None:
    assert failure_reason(error) == reason


def scrape(collector: JobMetricsCollector) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {family.name: [(sample.labels, sample.value) for sample in family.samples]
            for family in text_string_to_metric_families(text)}


def settings_at(port: int) -> Settings:
    return Settings(redis_url=f"redis://127.0.0.1:{port}/0")


def test_a_scrape_with_redis_refusing_says_redis_is_down_and_nothing_else() -> None:
    port = free_port()
    collector = JobMetricsCollector(ScrapeConnection(lambda: settings_at(port)), [FAILURES, LOSS],
                                    [QueueName.harvest])
    assert scrape(collector) == {"sporeprint_redis_up": [({}, 0.0)]}


@pytest.fixture
def silent_redis() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung Redis, or one behind a dropping firewall)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_a_scrape_with_redis_silent_times_out_quickly(silent_redis: int) -> None:
    metrics = DownloaderMetrics(ScrapeConnection(lambda: settings_at(silent_redis), timeout_s=0.3))
    started = time.monotonic()
    families = {family.name: family for family in text_string_to_metric_families(metrics.render().decode())}
    assert time.monotonic() - started < 3
    assert [sample.value for sample in families["sporeprint_redis_up"].samples] == [0.0]
    assert not any(name.startswith(("sporeprint_harvest", "sporeprint_rq")) for name in families)
    assert "sporeprint_downloader_requests" in families  # the process's own metrics are still there
