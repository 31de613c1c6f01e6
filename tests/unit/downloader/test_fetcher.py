"""The harvest's fetch loop, in-process: what it is configured with, and how it stops when a result is refused."""

from __future__ import annotations

import pickle

import pytest

from services.downloader.core.config import DownloaderSettings
from services.downloader.harvest.fetcher import FetchConfig, Fetcher, RowTask
from services.downloader.harvest.options import HarvestOptions
from services.downloader.harvest.state import RowResult
from shared.curation import Blacklist
from shared.schemas import HarvestStatus
from shared.settings import Settings
from shared.storage import ObjectStore

pytestmark = pytest.mark.unit


def test_a_store_made_from_settings_travels_and_a_bare_one_refuses() -> None:
    made = ObjectStore.from_settings(Settings(s3_bucket="fetch-bucket"))
    copy = pickle.loads(pickle.dumps(made))
    assert copy.bucket == "fetch-bucket" and copy.client is not made.client  # connects anew
    with pytest.raises(TypeError, match="from_settings"):
        pickle.dumps(ObjectStore(made.client, "b"))


def test_rows_and_results_survive_pickling() -> None:  # RQ job results and checkpoints carry them
    row = (RowTask("i1", "http://a.test/1.jpg", "a.test", "Amanita"),
           RowResult(image_id="i1", status=HarvestStatus.failed, error="http-404: gone"))
    assert pickle.loads(pickle.dumps(row)) == row


def test_the_cpu_pool_defaults_to_two_threads_per_usable_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from services.downloader.harvest import engine
    from services.downloader.harvest.engine import Harvester
    from services.downloader.harvest.state import HarvestRequest

    monkeypatch.setattr(engine, "available_cpus", lambda: 3)
    request = HarvestRequest(id="fetch-test-1", dataset="d", version=1, created_at=datetime.now(UTC))
    store = ObjectStore.from_settings(Settings())
    assert Harvester(store, request, DownloaderSettings(), Blacklist())._fetcher.config.cpu_threads == 6
    assert Harvester(store, request, DownloaderSettings(cpu_threads=2), Blacklist())._fetcher.config.cpu_threads == 2


async def test_a_fetch_loop_whose_results_cannot_be_taken_stops_and_says_why() -> None:
    def refuse(task: RowTask, result: RowResult) -> None:
        raise KeyError(task.image_id)

    config = FetchConfig(harvest_id="h-1", options=HarvestOptions(), settings=DownloaderSettings(),
                         blacklist=Blacklist(), concurrency=4, store_concurrency=2, cpu_threads=2)
    fetcher = Fetcher(config, ObjectStore.from_settings(Settings()), refuse)
    fetcher.submit([RowTask("i1", "ftp://files.test/1.jpg", "files.test", "Amanita")])  # refused without a request
    fetcher.finish()
    with pytest.raises(KeyError, match="i1"):
        await fetcher.run()
