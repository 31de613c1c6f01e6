"""A real harvest by a real RQ worker process, then ``GET /metrics`` of the downloader under uvicorn: the counters
the worker wrote to Redis are what the service reports, exactly, and the harvest queue's figures are there."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fixtureweb.faults import Fault
from shared.manifests import ManifestStore
from shared.schemas import HarvestStatus
from shared.settings import Settings
from tests.conftest import TEST_TOKEN

from .conftest import DOMAINS, NOAI_HOST, downloader_env
from .test_api import upload, wait_for
from .webfixture import SourceRow, species_rows, write_csv

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
METRICS_DB = 8  # its own Redis database: no other test's harvest adds to these counters


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def test_metrics_after_a_harvest_match_what_it_stored(web, settings: Settings, manifests: ManifestStore,
                                                      downloader_settings, run_service, run_worker, tmp_path) -> None:
    settings = settings.model_copy(update={"redis_url": settings.redis_url.rsplit("/", 1)[0] + f"/{METRICS_DB}"})
    env = downloader_env(downloader_settings)
    service = run_service("downloader-metrics", "services.downloader.main:app", settings, env)
    run_worker("harvest-metrics-worker", ["harvest"], settings, env)
    rows = [*species_rows(web, 12, start=6000, domains=DOMAINS),
            SourceRow(web.url(DOMAINS[0], f"/fault/{Fault.NOT_FOUND.value}/1.jpg"), "Fault fungus"),
            SourceRow(web.url(DOMAINS[1], f"/fault/{Fault.HTML.value}/2.jpg"), "Fault fungus"),
            *species_rows(web, 1, start=6100, domains=[NOAI_HOST])]

    with httpx.Client(base_url=service.url, timeout=30) as client:
        before = scrape(client)
        assert upload(client, write_csv(tmp_path / "metrics.csv", rows), "metrics-fungi").status_code == 201
        started = client.post("/harvests", headers=AUTH, json={"dataset": "metrics-fungi",
                                                               "options": {"resize": {"max_side": 64}}})
        assert started.status_code == 202, started.text
        view = wait_for(client, started.json()["id"], {"completed", "failed"})
        assert view["state"] == "completed", view
        after = scrape(client)

    def added(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    table = manifests.read("metrics-fungi", view["manifest_version"]).to_pylist()
    stored = [row for row in table if row["status"] == HarvestStatus.ok]
    assert len(stored) == view["progress"]["ok"] >= 10
    assert added("sporeprint_harvest_images_stored_total") == len(stored)
    assert added("sporeprint_harvest_bytes_stored_total") == sum(row["bytes"] for row in stored)
    assert added("sporeprint_harvest_rows_total") == len(rows)
    assert added("sporeprint_harvest_failures_total", reason="http-4xx") == 1
    assert added("sporeprint_harvest_failures_total", reason="not-an-image") == 1
    assert added("sporeprint_harvest_skips_total", reason="noai") == 1
    assert added("sporeprint_harvest_jobs_total", state="completed") == 1
    assert after[("sporeprint_redis_up", ())] == 1
    assert after[("sporeprint_rq_queued_jobs", (("queue", "harvest"),))] == 0
    assert after[("sporeprint_rq_workers", (("queue", "harvest"),))] == 1
    assert ("sporeprint_rq_failed_jobs", (("queue", "harvest"),)) in after
    assert after[("sporeprint_downloader_requests_total", (("endpoint", "/harvests"), ("status", "202")))] == 1
