"""The shared downloader client (what the CLI and the demo call) against the real downloader app under uvicorn,
the real S3 server and Redis: import, manifests, a harvest's start, status, cancel and resume, and refusals.
No worker runs, so a harvest stays queued until it is cancelled."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.clients import ServiceRefused
from shared.clients.downloader import DownloaderClient
from shared.queue import JobState
from tests.contract.conftest import refusal

pytestmark = pytest.mark.contract


def test_import_and_read_manifests(client_of, gbif_sample: Path) -> None:
    downloader = client_of(DownloaderClient)
    info = downloader.import_source("psilocybe", gbif_sample, species="Psilocybe semilanceata",
                                    family="Hymenogastraceae")
    assert (info.dataset, info.version, info.operation, info.rows) == ("psilocybe", 1, "import", 1619)
    assert downloader.manifest_versions("psilocybe") == [info]
    detail = downloader.manifest("psilocybe", 1)
    assert detail.info == info
    assert detail.summary["rows"] == 1619 and detail.summary["species"] == 1


def test_an_import_error_carries_the_line_to_fix(client_of, tmp_path: Path) -> None:
    downloader = client_of(DownloaderClient)
    source = tmp_path / "bad.csv"
    source.write_text("link,name\nhttp://a.test/1.jpg,x\n")
    with pytest.raises(ServiceRefused) as refused:
        downloader.import_source("bad", source)
    assert refused.value.status == 422
    assert refused.value.body["file"] == "bad.csv" and refused.value.body["line"] == 1
    assert refused.value.detail.startswith("file bad.csv, line 1: ") and "url" in refused.value.detail
    status, detail = refusal(lambda: downloader.import_source("Bad Name!", source))
    assert status == 422 and detail.startswith("body.dataset: ")  # a validation error: where, and what


def test_csv_burst_shots_become_one_observation_unless_asked_not_to(client_of, tmp_path: Path) -> None:
    downloader = client_of(DownloaderClient)
    source = tmp_path / "bursts.csv"
    source.write_text("url,label,recorded_by,event_date,latitude,longitude\n"
                      "http://a.test/1.jpg,Amanita muscaria,Ann,2024-10-01T10:00,55.1231,12.4561\n"
                      "http://a.test/2.jpg,Amanita muscaria,Ann,2024-10-01T10:01,55.1232,12.4562\n"
                      "http://a.test/3.jpg,Amanita muscaria,Ann,2024-10-02T09:00,55.1231,12.4561\n"
                      "http://a.test/4.jpg,Amanita muscaria,,2024-10-01T10:00,55.1231,12.4561\n")
    grouped = downloader.import_source("bursts", source)
    assert downloader.manifest("bursts", grouped.version).summary["observations"] == 3  # 1+2 together
    apart = downloader.import_source("bursts", source, group_observations="none")
    assert downloader.manifest("bursts", apart.version).summary["observations"] == 4
    status, detail = refusal(lambda: downloader.import_source("bursts", source, group_observations="by-mood"))
    assert status == 422 and "group_observations" in detail


def test_start_status_cancel_resume(client_of, gbif_sample: Path) -> None:
    downloader = client_of(DownloaderClient)
    downloader.import_source("psilocybe", gbif_sample, species="Psilocybe semilanceata")
    started = downloader.harvest("psilocybe", options={"max_per_class": 3, "resize": {"max_side": 96}})
    assert (started.state, started.dataset, started.version, started.manifest_version) == (
        JobState.queued, "psilocybe", 1, None)
    assert downloader.harvest_status(started.id).id == started.id
    assert downloader.cancel_harvest(started.id).state is JobState.cancelled
    assert refusal(lambda: downloader.resume_harvest(started.id)) == (409, "harvest already finished")


def test_refusals_carry_the_services_detail(client_of) -> None:
    downloader = client_of(DownloaderClient)
    assert refusal(lambda: downloader.harvest("nothing-here")) == (404, "no such dataset or version")
    assert refusal(lambda: downloader.harvest_status("h-0123456789abcdef")) == (404, "no such harvest")
    # one path segment: an id with a slash cannot reach another route
    assert refusal(lambda: downloader.harvest_status("../manifests"))[0] == 404
    with DownloaderClient(downloader.base_url) as anonymous:
        status, detail = refusal(lambda: anonymous.harvest("nothing-here"))
    assert status == 401 and "Bearer" in detail
