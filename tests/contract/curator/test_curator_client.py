"""The shared curator client (what the demo and the downloader call) against the real curator app under uvicorn
and the real S3 server: domain scores and curations (no worker runs: a curation stays queued). The blacklist
calls are checked in tests/contract/pipeline/test_downloader_to_curator.py."""

from __future__ import annotations

import pytest

from fixtureweb.harvested import write_synthetic_manifest
from shared.clients.curator import CuratorClient
from shared.queue import JobState
from tests.contract.conftest import refusal

pytestmark = pytest.mark.contract


def test_domain_scores_and_a_queued_curation(client_of, store) -> None:
    curator = client_of(CuratorClient)
    info = write_synthetic_manifest(store, "fungi", n_classes=2, images_per_class=6, size=32)
    report = curator.domain_scores("fungi")
    assert (report.dataset, report.version) == ("fungi", info.version)
    assert report.domains and sum(domain.images for domain in report.domains) == report.rows
    assert {domain.recommendation for domain in report.domains} <= {"keep", "review", "blacklist"}

    created = curator.curate("fungi", info.version)
    assert (created.state, created.dataset, created.version, created.report) == (
        JobState.queued, "fungi", info.version, None)
    assert curator.curation(created.id).state is JobState.queued


def test_refusals_carry_the_services_detail(client_of) -> None:
    curator = client_of(CuratorClient)
    assert refusal(lambda: curator.curation("0123456789abcdef")) == (404, "curation not found")
    assert refusal(lambda: curator.curate("nothing-here"))[0] == 404
