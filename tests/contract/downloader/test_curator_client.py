"""The downloader's curator client against a real FastAPI app under uvicorn serving the shared
Blacklist contract; and the fallbacks (cache in the real S3 server, then the seed list)."""

from __future__ import annotations

import json

import pytest

from services.downloader.clients.curator import CuratorClient, CuratorUnavailable
from services.downloader.harvest.blacklist import load_blacklist
from shared.curation import SEED_BLACKLIST
from shared.stack import free_port

pytestmark = pytest.mark.contract

APP = "tests.contract.downloader.blacklist_app:app"
CACHE = "curation/blacklist-cache.json"
ENTRIES = {"herbarium-digital.test": "herbarium sheets", "fungi-atlas.test/scans/": "specimen scans"}


async def test_client_reads_the_blacklist_contract(run_service, settings) -> None:
    curator = run_service("curator", APP, settings, {"BLACKLIST_ENTRIES": json.dumps(ENTRIES)})
    async with CuratorClient(curator.url) as client:
        blacklist = await client.blacklist()
    assert blacklist.revision == 7
    assert {entry.entry for entry in blacklist.entries} == set(ENTRIES)
    assert blacklist.match("http://cdn.herbarium-digital.test/a.jpg").entry == "herbarium-digital.test"
    assert blacklist.match("http://fungi-atlas.test/scans/1.jpg").entry == "fungi-atlas.test/scans/"
    assert blacklist.match("http://fungi-atlas.test/media/1.jpg") is None


@pytest.mark.parametrize("status_code", [500, 404])
async def test_an_unwell_curator_is_unavailable(run_service, settings, status_code: int) -> None:
    curator = run_service("curator", APP, settings, {"BLACKLIST_STATUS": str(status_code)})
    async with CuratorClient(curator.url) as client:
        with pytest.raises(CuratorUnavailable, match=str(status_code)):
            await client.blacklist()


async def test_down_curator_falls_back_to_cache_then_seed(run_service, settings, store) -> None:
    curator = run_service("curator", APP, settings, {"BLACKLIST_ENTRIES": json.dumps(ENTRIES)})
    blacklist, origin = await load_blacklist(curator.url, store, CACHE)
    assert origin == "curator" and store.exists(CACHE)
    curator.stop()
    cached, origin = await load_blacklist(curator.url, store, CACHE, timeout_s=2)
    assert origin == "cache" and cached == blacklist
    store.delete(CACHE)
    seed, origin = await load_blacklist(f"http://127.0.0.1:{free_port()}", store, CACHE, timeout_s=2)
    assert origin == "seed"
    assert {entry.entry for entry in seed.entries} == set(SEED_BLACKLIST)
    assert seed.match("https://mediaphoto.mnhn.fr/media/123.jpg") is not None
    assert seed.match("https://mediaphoto.mnhn.fr/other/123.jpg") is None


async def test_client_must_be_entered() -> None:
    with pytest.raises(RuntimeError, match="async with"):
        await CuratorClient("http://127.0.0.1:1").blacklist()
