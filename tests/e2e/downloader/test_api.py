"""The downloader API under uvicorn with a real RQ worker process, the real S3 server and Redis:
import, harvest, progress, cancel, the CLI's progress bar, and bad inputs."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from services.downloader.core.config import DownloaderSettings
from shared.manifests import ManifestStore
from shared.storage import ObjectStore
from sporeprint.cli import harvest as harvest_cli
from sporeprint.processes import start_service, start_worker
from tests.conftest import TEST_TOKEN, make_settings, settings_env

from .conftest import DOMAINS, downloader_env
from .webfixture import SourceRow, species_rows, write_csv

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
APP = "services.downloader.main:app"
CURATOR = "tests.contract.downloader.blacklist_app:app"


@pytest.fixture(scope="module")
def api_settings(stack):
    return make_settings(stack, f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def api(api_settings, tmp_path_factory):
    """One downloader under uvicorn, one RQ worker and a stand-in curator for the whole module."""
    logs = tmp_path_factory.mktemp("api-logs")
    curator = start_service("curator", CURATOR, {**settings_env(api_settings), "BLACKLIST_ENTRIES": json.dumps(
        {f"{DOMAINS[2]}/blocked/": "test entry"})}, logs)
    settings = api_settings.model_copy(update={"curator_url": curator.url})
    env = {**settings_env(settings), **downloader_env(DownloaderSettings(
        allow_loopback=True, cpu_threads=2, checkpoint_interval_s=0.2,
        progress_interval_s=0.1, lease_ttl_s=3))}
    service = start_service("downloader", APP, env, logs)
    worker = start_worker("harvest-worker", ["harvest"], env, logs)
    try:
        with httpx.Client(base_url=service.url, timeout=30) as client:
            yield client
    finally:
        worker.stop()
        service.stop()
        curator.stop()


@pytest.fixture
def manifests(api_settings) -> ManifestStore:
    return ManifestStore(ObjectStore.from_settings(api_settings))


def wait_for(client: httpx.Client, harvest_id: str, states: set[str], timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = client.get(f"/harvests/{harvest_id}").json()
        if view["state"] in states:
            return view
        time.sleep(0.2)
    raise AssertionError(f"harvest {harvest_id} never reached {states}: {view}")


def upload(client: httpx.Client, path: Path, dataset: str, **form: str) -> httpx.Response:
    with open(path, "rb") as stream:
        return client.post("/manifests", headers=AUTH, data={"dataset": dataset, **form},
                           files={"file": (path.name, stream, "text/csv")})


def test_import_harvest_and_summary(api, web, tmp_path, manifests) -> None:
    blocked = SourceRow(web.url(DOMAINS[2], "/blocked/species/1/3.jpg"), "Blocked fungus")
    source = write_csv(tmp_path / "fungi.csv", [*species_rows(web, 24, start=2000, domains=DOMAINS), blocked])
    created = upload(api, source, "fungi")
    assert created.status_code == 201, created.text
    assert (created.json()["version"], created.json()["operation"]) == (1, "import")

    started = api.post("/harvests", headers=AUTH, json={"dataset": "fungi", "options": {
        "max_per_class": 5, "resize": {"max_side": 96, "quality": 80}}})
    assert started.status_code == 202, started.text
    harvest_id = started.json()["id"]
    view = wait_for(api, harvest_id, {"completed", "failed"})
    assert view["state"] == "completed", view
    assert view["manifest_version"] == 2
    progress = view["progress"]
    assert progress["ok"] == 20 and progress["skipped_by_reason"] == {"class-cap": 4, "blacklisted": 1}
    assert progress["images_per_s"] > 0
    assert progress["blacklist"] == "curator"  # fetched over HTTP from the (stand-in) curator

    detail = api.get("/manifests/fungi/2").json()
    assert detail["info"]["parent"] == 1 and detail["info"]["operation"] == "harvest"
    assert detail["summary"]["status"] == {"ok": 20, "skipped": 5}
    assert detail["summary"]["species"] == 5
    assert "fungi" in [d["dataset"] for d in api.get("/manifests").json()]
    assert [v["version"] for v in api.get("/manifests/fungi").json()] == [1, 2]
    table = manifests.read("fungi", 2)
    row = next(r for r in table.to_pylist() if r["url"] == blocked.url)
    assert (row["status"], row["error"]) == ("skipped", f"blacklisted: {DOMAINS[2]}/blocked/")
    assert all(key.startswith("images/") for key in table.column("storage_key").drop_null().to_pylist())

    assert api.delete(f"/harvests/{harvest_id}", headers=AUTH).status_code == 409
    assert api.post(f"/harvests/{harvest_id}/resume", headers=AUTH).status_code == 409


def test_cli_shows_progress_until_done(api, web, tmp_path) -> None:
    source = write_csv(tmp_path / "cli.csv", species_rows(web, 8, start=3000, domains=DOMAINS))
    assert upload(api, source, "cli-fungi").status_code == 201
    result = CliRunner().invoke(harvest_cli, ["start", "cli-fungi", "--max-side", "64", "--url", str(api.base_url),
                                              "--token", TEST_TOKEN])
    assert result.exit_code == 0, result.output
    assert "completed: ok 8" in result.output
    assert "img" in result.output  # the tqdm bar (written to stderr, mixed in by CliRunner)
    assert "wrote cli-fungi v2" in result.output


def test_cancel_a_running_harvest(api, web, tmp_path, manifests) -> None:
    rows = species_rows(web, 120, start=4000, domains=["throttled.test"])
    source = write_csv(tmp_path / "slow.csv", rows)
    assert upload(api, source, "slow").status_code == 201
    body = {"dataset": "slow", "options": {"per_domain": 2}}
    harvest_id = api.post("/harvests", headers=AUTH, json=body).json()["id"]
    wait_for(api, harvest_id, {"running"})
    deadline = time.monotonic() + 30
    while not fetching(api.get(f"/harvests/{harvest_id}").json()["progress"]):  # its shard is fetching
        assert time.monotonic() < deadline, "the harvest's shard did not start fetching"
        time.sleep(0.05)
    cancelled = api.delete(f"/harvests/{harvest_id}", headers=AUTH)
    assert cancelled.status_code == 202 and cancelled.json()["state"] in ("cancelling", "cancelled")
    view = wait_for(api, harvest_id, {"cancelled"})
    assert view["manifest_version"] is None
    assert [info.version for info in manifests.versions("slow")] == [1]  # nothing half-written
    assert view["progress"]["ok"] < len(rows)


def fetching(progress: dict) -> bool:
    return progress.get("in_flight", 0) + progress.get("processing", 0) + progress.get("done", 0) > 0


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("POST", "/manifests", {"data": {"dataset": "x"}}),
    ("POST", "/harvests", {"json": {"dataset": "x"}}),
    ("DELETE", "/harvests/h-0123456789abcdef", {}),
    ("POST", "/harvests/h-0123456789abcdef/resume", {}),
])
def test_mutations_need_the_token(api, method, path, kwargs) -> None:
    assert api.request(method, path, **kwargs).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert api.request(method, path, headers=wrong, **kwargs).status_code == 403


def test_bad_inputs_get_clear_4xx(api, tmp_path, manifests) -> None:
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("link,name\nhttp://a.test/1.jpg,x\n")
    response = upload(api, bad_csv, "bad")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["file"] == "bad.csv" and detail["line"] == 1 and "url" in detail["message"]

    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert upload(api, empty, "bad").json()["detail"]["message"] == "the file is empty"
    assert upload(api, bad_csv, "Bad Name!").status_code == 422
    no_source = api.post("/manifests", headers=AUTH, data={"dataset": "bad"})
    assert (no_source.status_code, no_source.json()["detail"]) == (
        422, "give the source as a file upload ('file') or as a URL ('url')")
    private = api.post("/manifests", headers=AUTH, data={"dataset": "bad", "url": "http://10.1.2.3/x.csv"})
    assert private.status_code == 422 and "blocked-address" in private.json()["detail"]["message"]

    unknown = api.post("/harvests", headers=AUTH, json={"dataset": "nothing-here"})
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "no such dataset or version")
    for options in ({"per_domain": 0}, {"resize": {"max_side": 3}}, {"classes": []}, {"colour": "red"}):
        response = api.post("/harvests", headers=AUTH, json={"dataset": "nothing-here", "options": options})
        assert response.status_code == 422, options
    assert api.get("/harvests/h-0123456789abcdef").status_code == 404
    assert api.get("/harvests/..%2Fetc").status_code == 404
    assert api.get("/manifests/nothing-here/1").status_code == 404
    assert api.get("/health").json() == {"status": "ok"}
    assert "bad" not in manifests.datasets()  # no bad input wrote anything
