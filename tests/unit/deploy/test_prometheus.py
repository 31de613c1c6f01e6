"""deploy/prometheus/ against the code: the scrape config reaches each API by its compose name and port, and every
metric name its README shows is one the services really expose."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from services.curator.metrics import CURATION_METRICS
from services.downloader.metrics import HARVEST_METRICS
from services.inference.metrics import InferenceMetrics
from services.trainer.metrics import TRAINING_METRICS
from shared.job_metrics import QUEUE_FIGURES, REDIS_UP, MetricKind
from shared.metrics import HttpMetrics

from .conftest import API_PORTS, DEPLOY

pytestmark = pytest.mark.unit

PROMETHEUS = DEPLOY / "prometheus"


def exposed_names() -> set[str]:
    """Every sample name the services expose (counters with ``_total``, histograms with their series)."""
    names = {REDIS_UP, *(name for name, _ in QUEUE_FIGURES)}
    for metric in (*HARVEST_METRICS, *CURATION_METRICS, *TRAINING_METRICS):
        names.add(f"{metric.name}_total" if metric.kind is MetricKind.counter else metric.name)
    for metrics in (*(HttpMetrics(service) for service in ("downloader", "curator", "trainer")), InferenceMetrics()):
        for family in metrics.registry.collect():
            if family.name == REDIS_UP or family.name.startswith(("sporeprint_harvest", "sporeprint_curation",
                                                                  "sporeprint_training", "sporeprint_rq")):
                continue
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
            names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def test_the_scrape_config_reaches_every_api_on_its_port(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = {target: group.get("labels", {}).get("service")
               for job in config["scrape_configs"] for group in job["static_configs"] for target in group["targets"]}
    assert targets == {f"{name}:{port}": name for name, port in API_PORTS.items()}
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in config["scrape_configs"])
    assert set(API_PORTS) <= set(compose["services"])


def test_the_readme_names_only_metrics_that_exist() -> None:
    text = (PROMETHEUS / "README.md").read_text()
    exposed = exposed_names()
    mentioned = set(re.findall(r"\bsporeprint_[a-z_]+[a-z]", text)) - {"sporeprint_<service>"}
    shorthand = {name for name in mentioned if not any(e.startswith(name) for e in exposed)}
    assert not shorthand, f"the README names metrics nobody exposes: {sorted(shorthand)}"
    for name in ("sporeprint_harvest_images_stored_total", "sporeprint_curation_rows_total",
                 "sporeprint_training_val_accuracy", "sporeprint_rq_queued_jobs", "sporeprint_redis_up"):
        assert name in exposed and name in text
