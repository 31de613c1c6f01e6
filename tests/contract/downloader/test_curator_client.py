"""The downloader's curator client (shared.clients.curator) against a real FastAPI app under uvicorn serving
the shared Blacklist contract; and the harvest's fallbacks (cache in the real S3 server, then the seed list)."""

from __future__ import annotations

import json

import pytest

from services.downloader.harvest.blacklist import load_blacklist
from shared.clients import ServiceRefused, ServiceUnavailable
from shared.clients.curator import CuratorClient
from shared.curation import SEED_BLACKLIST, canonical_entry
from sporeprint.stack import free_port

pytestmark = pytest.mark.contract

APP = "tests.contract.downloader.blacklist_app:app"
CACHE = "curation/blacklist-cache.json"
ENTRIES = {"herbarium-digital.test": "herbarium sheets", "fungi-atlas.test/scans/": "specimen scans"}


def test_client_reads_the_blacklist_contract(run_service, settings) -> None:
    curator = run_service("curator", APP, settings, {"BLACKLIST_ENTRIES": json.dumps(ENTRIES)})
    with CuratorClient(curator.url) as client:
        blacklist = client.blacklist()
    assert blacklist.revision == 7
    assert {entry.entry for entry in blacklist.entries} == set(ENTRIES)
    assert blacklist.match("http://cdn.herbarium-digital.test/a.jpg").entry == "herbarium-digital.test"
    assert blacklist.match("http://fungi-atlas.test/scans/1.jpg").entry == "fungi-atlas.test/scans/"
    assert blacklist.match("http://fungi-atlas.test/media/1.jpg") is None


@pytest.mark.parametrize(("status_code", "error"), [(500, ServiceUnavailable), (404, ServiceRefused)])
async def test_an_unwell_curator_is_an_error_and_the_harvest_falls_back(
        run_service, settings, store, status_code: int, error: type[Exception]) -> None:
    curator = run_service("curator", APP, settings, {"BLACKLIST_STATUS": str(status_code)})
    with CuratorClient(curator.url) as client, pytest.raises(error, match=f"\\({status_code}\\): curator is unwell"):
        client.blacklist()
    assert (await load_blacklist(curator.url, store, CACHE))[1] == "seed"


async def test_an_answer_outside_the_contract_is_unavailable(run_service, settings, store) -> None:
    curator = run_service("curator", APP, settings, {"BLACKLIST_BODY": json.dumps({"entries": "everything"})})
    with CuratorClient(curator.url) as client, pytest.raises(ServiceUnavailable, match="not its contract"):
        client.blacklist()
    assert (await load_blacklist(curator.url, store, CACHE))[1] == "seed"


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
    assert {entry.entry for entry in seed.entries} == {canonical_entry(entry)[0] for entry in SEED_BLACKLIST}
    assert seed.match("https://mediaphoto.mnhn.fr/media/123.jpg") is not None
    assert seed.match("https://mediaphoto.mnhn.fr/other/123.jpg") is None


def test_a_closed_port_is_unavailable_after_the_retries() -> None:
    client = CuratorClient(f"http://127.0.0.1:{free_port()}", retries=2, retry_backoff_s=0.01)
    with client, pytest.raises(ServiceUnavailable, match="did not answer GET /blacklist"):
        client.blacklist()
