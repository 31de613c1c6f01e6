"""Curator (provider) -> downloader (consumer): the downloader's real blacklist client against the real
curator app under uvicorn, including an edit made through the curator's API."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from services.downloader.clients.curator import CuratorClient
from services.downloader.harvest.blacklist import load_blacklist
from shared.curation import SEED_BLACKLIST, parse_entry
from shared.processes import ManagedProcess
from shared.settings import Settings
from shared.storage import ObjectStore

pytestmark = pytest.mark.contract


async def test_downloader_reads_the_real_curators_blacklist(
    settings: Settings, store: ObjectStore, run_service: Callable[..., ManagedProcess]
) -> None:
    curator = run_service("curator", "services.curator.main:app", settings)
    async with CuratorClient(curator.url) as client:
        seeded = await client.blacklist()
    # the same seven entries, each as the curator normalises it ("s3.msi.umn.edu/" is the whole domain)
    assert {(entry.domain, entry.path_prefix) for entry in seeded.entries} == {
        parse_entry(entry) for entry in SEED_BLACKLIST}

    auth = {"Authorization": f"Bearer {settings.api_token}"}
    added = httpx.put(f"{curator.url}/blacklist/scans.example.org/sheets/", headers=auth,
                      json={"reason": "specimen scans", "actor": "contract-test"})
    assert added.status_code == 201, added.text
    removed = httpx.delete(f"{curator.url}/blacklist/mycoportal.org", headers=auth,
                           params={"actor": "contract-test", "reason": "reviewed"})
    assert removed.status_code == 200, removed.text

    blacklist, origin = await load_blacklist(curator.url, store, "curation/blacklist-cache.json")
    assert origin == "curator"
    assert blacklist.revision > seeded.revision
    match = blacklist.match("https://scans.example.org/sheets/0001.jpg")
    assert match is not None and match.entry == "scans.example.org/sheets/" and match.added_by == "contract-test"
    assert blacklist.match("https://scans.example.org/photos/0001.jpg") is None
    assert blacklist.match("https://mycoportal.org/portal/1.jpg") is None  # removed entries stop matching
