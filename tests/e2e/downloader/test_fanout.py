"""One harvest fanned out over RQ shard jobs: three real worker processes take the shards, per-domain politeness
holds over all of them together (the fixture web counts requests in flight per domain), and a worker killed with
SIGKILL mid-shard loses nothing: its shard is retried by another worker and the harvest completes, each image
stored once."""

from __future__ import annotations

import time
from collections import Counter
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from redis import Redis
from rq import Worker

from fixtureweb.config import DomainConfig, Latency, WebConfig
from services.downloader.jobs import shard_job_id
from shared.queue import fetch_job, redis_connection
from sporeprint.processes import ManagedProcess
from tests.conftest import TEST_TOKEN

from .conftest import DOMAINS, downloader_env
from .test_api import upload, wait_for
from .test_resume import FAST_RECOVERY, kill_tree
from .webfixture import RunningWeb, species_rows, write_csv

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
ROWS = 3000
SHARD_ROWS = 500
PER_DOMAIN = 3


def mid_shard_worker(connection: Redis, harvest_id: str, workers: list) -> ManagedProcess:
    """The worker running a shard that has checkpointed some of its rows and has more to fetch."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for n in range(ROWS // SHARD_ROWS):
            job = fetch_job(connection, shard_job_id(harvest_id, 1, n))
            done = job.meta.get("progress", {}).get("done", 0) if job is not None else 0
            if job is not None and job.get_status() == "started" and SHARD_ROWS // 5 <= done <= SHARD_ROWS // 2:
                worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + job.worker_name, connection)
                by_pid = {process.pid: process for process in workers}
                if worker is not None and worker.pid in by_pid:
                    return by_pid[worker.pid]
        time.sleep(0.02)
    raise AssertionError("no shard caught in the middle")


@pytest.fixture
def tiny_web():
    """Small images (cheap to decode), and enough latency that a worker alone would keep more than
    ``PER_DOMAIN`` requests in flight per domain if nothing held it back."""
    domains = tuple(DomainConfig(name=name, latency=Latency(median_ms=15, sigma=0.2), image_size=48)
                    for name in DOMAINS)
    running = RunningWeb(WebConfig(n_classes=4, domains=domains)).start()
    try:
        yield running
    finally:
        running.stop()


def test_three_workers_share_one_harvest_politely_and_survive_a_kill(
        tiny_web, run_service, run_worker, settings, downloader_settings, store, manifests, tmp_path) -> None:
    env = {**downloader_env(downloader_settings), **FAST_RECOVERY,
           "SPOREPRINT_DOWNLOADER_SHARD_ROWS": str(SHARD_ROWS)}
    service = run_service("downloader", "services.downloader.main:app", settings, env)
    api = httpx.Client(base_url=service.url, timeout=30)
    workers = [run_worker(f"fanout-worker-{n}", ["harvest"], settings, env) for n in (1, 2, 3)]

    rows = species_rows(tiny_web, ROWS, start=20_000, domains=DOMAINS)
    assert upload(api, write_csv(tmp_path / "fanout.csv", rows), "fanout").status_code == 201
    options = {"concurrency": 16, "per_domain": PER_DOMAIN, "resize": {"max_side": 48}}
    harvest_id = api.post("/harvests", headers=AUTH, json={"dataset": "fanout", "options": options}).json()["id"]

    connection = redis_connection(settings)
    victim = mid_shard_worker(connection, harvest_id, workers)
    busy = [worker for worker in workers if psutil.Process(worker.pid).children()]  # running a shard
    assert len(busy) >= 2, "the shards should run on several workers at once"
    killed = kill_tree(victim.pid)
    assert len(killed) >= 2  # the worker and its work horse

    view = wait_for(api, harvest_id, {"completed", "failed"}, timeout=120)
    assert view["state"] == "completed", view
    assert view["progress"]["done"] == ROWS and view["progress"]["ok"] == ROWS

    table = manifests.read("fanout", view["manifest_version"])
    assert table.num_rows == ROWS and len(set(table.column("image_id").to_pylist())) == ROWS
    assert set(table.column("status").to_pylist()) == {"ok"}
    keys = set(table.column("storage_key").to_pylist())
    assert sorted(key for key in store.list("images/") if key in keys) == sorted(keys)  # each image once
    assert len(set(table.column("sha256").to_pylist())) == len(keys)

    # politeness over all workers together: never more than per_domain requests in flight to one host
    in_flight = tiny_web.log.max_in_flight()
    print(f"max in flight per domain: {in_flight}")
    assert set(in_flight) == set(DOMAINS) and max(in_flight.values()) <= PER_DOMAIN

    # the killed worker's shard was fetched again only where nothing was checkpointed: at most one shard's rows
    fetches = Counter(tiny_web.log.count(urlsplit(row.url).hostname, urlsplit(row.url).path) for row in rows)
    assert fetches[0] == 0
    refetched = sum((count - 1) * times for count, times in fetches.items())
    assert refetched <= SHARD_ROWS, fetches
    print(f"rows fetched again after the kill: {refetched}")

    shards = [fetch_job(connection, shard_job_id(harvest_id, 1, n)) for n in range(ROWS // SHARD_ROWS)]
    assert all(job is not None and job.get_status() == "finished" for job in shards)
    assert len({job.worker_name for job in shards if job is not None}) >= 2  # taken by several workers
