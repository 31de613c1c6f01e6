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
from rq import Worker

from fixtureweb.config import DomainConfig, Latency, WebConfig
from services.downloader.harvest.state import HarvestState
from shared.queue import redis_connection
from shared.settings import Settings
from tests.conftest import TEST_TOKEN

from .conftest import DOMAINS, downloader_env
from .test_api import upload, wait_for
from .webfixture import RunningWeb, species_rows, write_csv

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
ROWS = 400


def kill_tree(pid: int) -> list[int]:
    """SIGKILL a worker, its work horse and anything below, by PID, as a crash would. Returns the PIDs killed."""
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


# A dead worker's job is noticed within seconds (the defaults take minutes): heartbeat every second, abandoned
# after 2 s of silence, each live worker looks for abandoned jobs every 2 s.
FAST_RECOVERY = {"SPOREPRINT_WORKER_HEARTBEAT_S": "1", "SPOREPRINT_WORKER_ABANDONED_AFTER_S": "2",
                 "SPOREPRINT_WORKER_MAINTENANCE_S": "2"}


def start_and_kill(api: httpx.Client, workers: list, web: RunningWeb, store, tmp_path,
                   dataset: str, settings: Settings) -> tuple[str, list, dict]:
    """Start a harvest of ROWS rows, kill -9 the worker running it a quarter of the way in;
    (id, rows, results checkpointed before the kill)."""
    rows = species_rows(web, ROWS, domains=DOMAINS)
    assert upload(api, write_csv(tmp_path / f"{dataset}.csv", rows), dataset).status_code == 201
    options = {"concurrency": 8, "per_domain": 2, "resize": {"max_side": 96}}
    harvest_id = api.post("/harvests", headers=AUTH, json={"dataset": dataset, "options": options}).json()["id"]

    deadline = time.monotonic() + 60
    while api.get(f"/harvests/{harvest_id}").json()["progress"].get("done", 0) < ROWS // 4:
        assert time.monotonic() < deadline, "the harvest did not get going"
        time.sleep(0.05)
    # running a job, as RQ says (a worker's children also include the RQ scheduler of the one that holds its lock)
    running = {worker.pid for worker in Worker.all(connection=redis_connection(settings))
               if worker.get_current_job_id() is not None}
    busy = [worker for worker in workers if worker.pid in running]
    assert len(busy) == 1
    killed = kill_tree(busy[0].pid)
    assert len(killed) >= 2  # the worker and its work horse at least
    before = HarvestState(store, harvest_id).load_results()
    assert 0 < len(before) < ROWS, "the kill must land mid-harvest"
    return harvest_id, rows, before


def assert_exactly_once(view: dict, dataset: str, rows: list, before: dict, web: RunningWeb, store,
                        manifests) -> None:
    """Every row in the new version and stored, each image once, no checkpointed row fetched again."""
    assert view["state"] == "completed", view
    table = manifests.read(dataset, view["manifest_version"])
    assert table.num_rows == ROWS
    assert len(set(table.column("image_id").to_pylist())) == ROWS  # no row lost, none doubled
    assert set(table.column("status").to_pylist()) == {"ok"}
    keys = table.column("storage_key").to_pylist()
    stored = [key for key in store.list("images/") if key in set(keys)]
    assert sorted(stored) == sorted(set(keys))  # each image stored once
    assert len(set(table.column("sha256").to_pylist())) == len(stored)

    fetches = Counter()
    for row in rows:
        parts = urlsplit(row.url)
        fetches[row.url] = web.log.count(parts.hostname, parts.path)
    urls = dict(zip(table.column("image_id").to_pylist(), table.column("url").to_pylist(), strict=True))
    assert all(fetches[urls[image_id]] == 1 for image_id in before)  # checkpointed rows: never refetched
    assert all(count >= 1 for count in fetches.values())
    refetched = sum(count - 1 for count in fetches.values())
    assert refetched <= ROWS - len(before)
    print(f"checkpointed before the kill: {len(before)}, refetched after: {refetched}")


def test_kill_dash_nine_then_resume(slow_web, run_service, run_worker, settings, downloader_settings, store,
                                    manifests, tmp_path) -> None:
    env = downloader_env(downloader_settings)
    service = run_service("downloader", "services.downloader.main:app", settings, env)
    api = httpx.Client(base_url=service.url, timeout=30)
    worker = run_worker("resume-worker-1", ["harvest"], settings, env)
    harvest_id, rows, before = start_and_kill(api, [worker], slow_web, store, tmp_path, "resume", settings)

    view = wait_for(api, harvest_id, {"interrupted"}, timeout=30)
    assert view["progress"]["done"] < ROWS
    run_worker("resume-worker-2", ["harvest"], settings, env)
    resumed = api.post(f"/harvests/{harvest_id}/resume", headers=AUTH)
    assert resumed.status_code == 202, resumed.text
    view = wait_for(api, harvest_id, {"completed", "failed"}, timeout=120)
    assert_exactly_once(view, "resume", rows, before, slow_web, store, manifests)


def test_kill_dash_nine_and_another_worker_retries_it_unasked(slow_web, run_service, run_worker, settings,
                                                             downloader_settings, store, manifests, tmp_path) -> None:
    """No resume call: a live worker finds the dead worker's job abandoned and RQ retries it (job_retries)."""
    env = {**downloader_env(downloader_settings), **FAST_RECOVERY}
    service = run_service("downloader", "services.downloader.main:app", settings, env)
    api = httpx.Client(base_url=service.url, timeout=30)
    workers = [run_worker(f"retry-worker-{n}", ["harvest"], settings, env) for n in (1, 2)]
    harvest_id, rows, before = start_and_kill(api, workers, slow_web, store, tmp_path, "retry", settings)
    view = wait_for(api, harvest_id, {"completed", "failed"}, timeout=120)
    assert_exactly_once(view, "retry", rows, before, slow_web, store, manifests)
