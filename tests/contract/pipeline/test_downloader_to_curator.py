"""Curator (provider) -> downloader (consumer): the shared curator client, which the downloader reads the
blacklist with, against the real curator app under uvicorn, including edits made through the same client."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.downloader.harvest.blacklist import load_blacklist
from shared.clients import ServiceRefused
from shared.clients.curator import CuratorClient
from shared.curation import SEED_BLACKLIST, parse_entry
from shared.settings import Settings
from shared.storage import ObjectStore
from sporeprint.processes import ManagedProcess

pytestmark = pytest.mark.contract


async def test_downloader_reads_the_real_curators_blacklist(
    settings: Settings, store: ObjectStore, run_service: Callable[..., ManagedProcess]
) -> None:
    curator = run_service("curator", "services.curator.main:app", settings)
    with CuratorClient(curator.url, settings.api_token) as client:
        seeded = client.blacklist()
        # the same seven entries, each as the curator normalises it ("s3.msi.umn.edu/" is the whole domain)
        assert {(entry.domain, entry.path_prefix) for entry in seeded.entries} == {
            parse_entry(entry) for entry in SEED_BLACKLIST}

        added = client.add_to_blacklist("scans.example.org/sheets/", "specimen scans", actor="contract-test")
        assert (added.domain, added.path_prefix) == ("scans.example.org", "/sheets/")
        remaining = client.remove_from_blacklist("mycoportal.org", "reviewed", actor="contract-test")
        assert "mycoportal.org" not in {entry.entry for entry in remaining.entries}
        with pytest.raises(ServiceRefused) as refused:
            client.remove_from_blacklist("mycoportal.org", "reviewed twice", actor="contract-test")
        assert (refused.value.status, refused.value.detail) == (404, "blacklist entry not found")
        with pytest.raises(ServiceRefused) as invalid:
            client.add_to_blacklist("not a host!", "bad entry")
        assert invalid.value.status == 400 and invalid.value.detail.startswith("invalid blacklist entry")
    with CuratorClient(curator.url, "wrong-token") as stranger, pytest.raises(ServiceRefused) as forbidden:
        stranger.add_to_blacklist("example.org", "not allowed")
    assert (forbidden.value.status, forbidden.value.detail) == (403, "invalid API token")

    blacklist, origin = await load_blacklist(curator.url, store, "curation/blacklist-cache.json")
    assert origin == "curator"
    assert blacklist.revision > seeded.revision
    match = blacklist.match("https://scans.example.org/sheets/0001.jpg")
    assert match is not None and match.entry == "scans.example.org/sheets/" and match.added_by == "contract-test"
    assert blacklist.match("https://scans.example.org/photos/0001.jpg") is None
    assert blacklist.match("https://mycoportal.org/portal/1.jpg") is None  # removed entries stop matching
