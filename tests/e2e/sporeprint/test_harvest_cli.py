"""``sporeprint harvest ...`` driven as a person would (click's CliRunner on the real CLI) against a real
downloader under uvicorn, a real RQ worker, the real S3 server and Redis, harvesting from the fixture web."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from services.downloader.core.config import DownloaderSettings
from shared.clients.downloader import DownloaderClient
from shared.settings import Settings
from sporeprint.cli import main
from tests.e2e.downloader import conftest as downloader_fixtures
from tests.e2e.downloader.conftest import DOMAINS, downloader_env
from tests.e2e.downloader.webfixture import species_rows, write_csv

pytestmark = pytest.mark.e2e


web = downloader_fixtures.web  # the downloader tests' fixture web, once per module


@pytest.fixture
def downloader_url(settings: Settings, run_service, run_worker) -> str:
    curator = run_service("curator", "tests.contract.downloader.blacklist_app:app", settings)
    settings = settings.model_copy(update={"curator_url": curator.url})
    env = downloader_env(DownloaderSettings(allow_loopback=True, cpu_threads=2,
                                            checkpoint_interval_s=0.2, progress_interval_s=0.1, lease_ttl_s=3))
    run_worker("harvest-worker", ["harvest"], settings, env)
    return run_service("downloader", "services.downloader.main:app", settings, env).url


def sporeprint(tmp_path: Path, settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, ["--stack-dir", str(tmp_path / "no-stack"), *args], env={
        "SPOREPRINT_API_TOKEN": settings.api_token})


def test_start_watch_status_and_refusals(web, downloader_url: str, settings: Settings, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "cli.csv", species_rows(web, 8, start=5000, domains=DOMAINS))
    with DownloaderClient(downloader_url, settings.api_token) as downloader:
        assert downloader.import_source("cli-fungi", source).version == 1
    api = ["--url", downloader_url]  # the token comes from SPOREPRINT_API_TOKEN, as the settings read it

    started = sporeprint(tmp_path, settings, "harvest", "start", "cli-fungi", "--max-side", "64", "--no-wait", *api)
    assert started.exit_code == 0, started.output
    harvest_id = started.stdout.strip()
    assert harvest_id.startswith("h-") and f"harvest {harvest_id}: cli-fungi v1 (queued)" in started.stderr

    watched = sporeprint(tmp_path, settings, "harvest", "watch", harvest_id, "--interval", "0.2", *api)
    assert watched.exit_code == 0, watched.output
    assert f"harvest {harvest_id} completed: ok 8, failed 0" in watched.stdout
    assert "wrote cli-fungi v2" in watched.stdout
    assert "img" in watched.stderr  # the tqdm bar

    status = sporeprint(tmp_path, settings, "harvest", "status", harvest_id, *api)
    assert status.exit_code == 0, status.output
    view = json.loads(status.stdout)
    assert (view["state"], view["manifest_version"], view["progress"]["ok"]) == ("completed", 2, 8)
    assert view["progress"]["bytes"] > 0  # everything the downloader reports, not only what the CLI reads

    resumed = sporeprint(tmp_path, settings, "harvest", "resume", harvest_id, *api)
    assert resumed.exit_code == 1
    assert resumed.output.strip() == (
        f"Error: downloader refused POST /harvests/{harvest_id}/resume (409): harvest already finished")

    unknown = sporeprint(tmp_path, settings, "harvest", "start", "nothing-here", *api)
    assert unknown.exit_code == 1
    assert unknown.output.strip() == "Error: downloader refused POST /harvests (404): no such dataset or version"

    anonymous = CliRunner().invoke(main, ["--stack-dir", str(tmp_path / "no-stack"), "harvest", "cancel",
                                          harvest_id, *api, "--token", "wrong"])
    assert anonymous.exit_code == 1 and "(403): invalid API token" in anonymous.output
