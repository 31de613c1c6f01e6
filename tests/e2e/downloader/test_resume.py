"""kill -9 of the RQ worker in the middle of a harvest, then a resume: every row accounted for, every
image stored exactly once, and nothing checkpointed before the crash fetched again."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from fixtureweb.config import DomainConfig, Latency, WebConfig
from services.downloader.harvest.state import HarvestState
from tests.conftest import TEST_TOKEN

from .conftest import DOMAINS, downloader_env
from .test_api import upload, wait_for
from .webfixture import RunningWeb, species_rows, write_csv

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
ROWS = 400


def kill_tree(pid: int) -> list[int]:
    """SIGKILL a worker, its work horse and the horse's CPU pool, by PID, as a crash would."""
    root = psutil.Process(pid)
    victims = [root, *root.children(recursive=True)]
    for process in victims:
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    psutil.wait_procs(victims, timeout=10)
    return [process.pid for process in victims]


@pytest.fixture
def slow_web():
    domains = tuple(DomainConfig(name=name, latency=Latency(median_ms=60, sigma=0.3), image_size=160)
                    for name in DOMAINS)
    running = RunningWeb(WebConfig(n_classes=4, domains=domains)).start()
    try:
        yield running
    finally:
        running.stop()


def test_kill_dash_nine_then_resume(slow_web, run_service, run_worker, settings, downloader_settings, store,
                                    manifests, tmp_path) -> None:
    env = {**downloader_env(downloader_settings), "SPOREPRINT_DOWNLOADER_CPU_POOL": "process"}
    service = run_service("downloader", "services.downloader.main:app", settings, env)
    worker = run_worker("harvest-worker-1", ["harvest"], settings, env)
    rows = species_rows(slow_web, ROWS, domains=DOMAINS)
    api = httpx.Client(base_url=service.url, timeout=30)
    assert upload(api, write_csv(tmp_path / "big.csv", rows), "resume").status_code == 201
    options = {"concurrency": 8, "per_domain": 2, "resize": {"max_side": 96}}
    harvest_id = api.post("/harvests", headers=AUTH, json={"dataset": "resume", "options": options}).json()["id"]

    deadline = time.monotonic() + 60
    while api.get(f"/harvests/{harvest_id}").json()["progress"].get("done", 0) < ROWS // 4:
        assert time.monotonic() < deadline, "the harvest did not get going"
        time.sleep(0.05)
    killed = kill_tree(worker.pid)
    assert len(killed) >= 2  # the worker and its work horse at least
    before = HarvestState(store, harvest_id).load_results()
    assert 0 < len(before) < ROWS, "the kill must land mid-harvest"

    view = wait_for(api, harvest_id, {"interrupted"}, timeout=30)
    assert view["progress"]["done"] < ROWS
    run_worker("harvest-worker-2", ["harvest"], settings, env)
    resumed = api.post(f"/harvests/{harvest_id}/resume", headers=AUTH)
    assert resumed.status_code == 202, resumed.text
    view = wait_for(api, harvest_id, {"completed", "failed"}, timeout=120)
    assert view["state"] == "completed", view

    table = manifests.read("resume", view["manifest_version"])
    assert table.num_rows == ROWS
    assert len(set(table.column("image_id").to_pylist())) == ROWS  # no row lost, none doubled
    assert set(table.column("status").to_pylist()) == {"ok"}
    keys = table.column("storage_key").to_pylist()
    stored = list(store.list("images/"))
    assert sorted(stored) == sorted(set(keys))  # each image stored once, nothing orphaned
    assert len(set(table.column("sha256").to_pylist())) == len(stored)

    fetches = Counter()
    for row in rows:
        parts = urlsplit(row.url)
        fetches[row.url] = slow_web.log.count(parts.hostname, parts.path)
    urls = dict(zip(table.column("image_id").to_pylist(), table.column("url").to_pylist(), strict=True))
    assert all(fetches[urls[image_id]] == 1 for image_id in before)  # checkpointed rows: never refetched
    assert all(count >= 1 for count in fetches.values())
    refetched = sum(count - 1 for count in fetches.values())
    assert refetched <= ROWS - len(before)
    print(f"checkpointed before the kill: {len(before)}, refetched after: {refetched}")
