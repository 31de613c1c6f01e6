"""Fixtures of the downloader's end-to-end tests: the fixture web, downloader settings that reach it,
and a one-call way to import a list of fixture URLs as a manifest."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fixtureweb.config import DomainConfig, Latency, WebConfig
from services.downloader.core.config import DownloaderSettings
from services.downloader.harvest.options import HarvestOptions
from services.downloader.harvest.state import HarvestRequest, HarvestState
from services.downloader.importers import import_source
from shared.manifests import ManifestStore
from shared.schemas import ManifestInfo

from .webfixture import RunningWeb, SourceRow, write_csv

DOMAINS = ("fungi-atlas.test", "myco-photos.test", "wild-fungi.test", "spore-hunters.test")
THROTTLED = "throttled.test"  # answers 429 beyond 2 requests at once
NOAI_HOST = "noai-host.test"  # X-Robots-Tag: noai on everything


def small_web() -> WebConfig:
    fast = Latency(median_ms=5, sigma=0.2)
    domains = [DomainConfig(name=name, latency=fast, image_size=160, retry_after_s=1) for name in DOMAINS]
    domains.append(DomainConfig(name=THROTTLED, latency=Latency(median_ms=40, sigma=0), image_size=160,
                                max_concurrent=2, retry_after_s=1))
    domains.append(DomainConfig(name=NOAI_HOST, latency=fast, image_size=160, noai=True))
    return WebConfig(n_classes=4, domains=tuple(domains))


@pytest.fixture(scope="module")
def web() -> Iterator[RunningWeb]:
    running = RunningWeb(small_web()).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def downloader_settings() -> DownloaderSettings:
    return DownloaderSettings(allow_loopback=True, resolve={"*.test": "127.0.0.1"}, cpu_threads=2,
                              checkpoint_interval_s=0.2, progress_interval_s=0.1, lease_ttl_s=3)


def downloader_env(settings: DownloaderSettings) -> dict[str, str]:
    return {
        "SPOREPRINT_DOWNLOADER_ALLOW_LOOPBACK": "true",
        "SPOREPRINT_DOWNLOADER_RESOLVE": '{"*.test": "127.0.0.1"}',
        "SPOREPRINT_DOWNLOADER_CPU_THREADS": str(settings.cpu_threads),
        "SPOREPRINT_DOWNLOADER_CHECKPOINT_INTERVAL_S": str(settings.checkpoint_interval_s),
        "SPOREPRINT_DOWNLOADER_PROGRESS_INTERVAL_S": str(settings.progress_interval_s),
        "SPOREPRINT_DOWNLOADER_LEASE_TTL_S": str(settings.lease_ttl_s),
    }


@pytest.fixture
def import_rows(tmp_path: Path, manifests: ManifestStore) -> Callable[..., ManifestInfo]:
    def make(rows: list[SourceRow], dataset: str = "fungi") -> ManifestInfo:
        path = write_csv(tmp_path / f"{uuid.uuid4().hex}.csv", rows)
        return import_source(path, dataset, manifests)

    return make


def new_request(manifests: ManifestStore, info: ManifestInfo, **options: object) -> HarvestRequest:
    request = HarvestRequest(id=f"h-{uuid.uuid4().hex[:12]}", dataset=info.dataset, version=info.version,
                             options=HarvestOptions.model_validate(options), created_at=datetime.now(UTC))
    HarvestState(manifests.store, request.id).save_request(request)
    return request
