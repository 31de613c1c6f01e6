"""Request ids and JSON logs against the real stack: services under uvicorn (``--no-access-log``: the access
line is the services' own), a real RQ worker process, real HTTP between them. A request's id comes back in
``X-Request-ID``, is on its access line, travels with the job it queues, and on to the service that job calls."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from shared.settings import Settings
from sporeprint.processes import ManagedProcess
from tests.conftest import TEST_TOKEN

pytestmark = pytest.mark.e2e

JSON_LOGS = {"SPOREPRINT_LOG_FORMAT": "json", "SPOREPRINT_LOG_LEVEL": "INFO"}
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


def log_lines(process: ManagedProcess) -> list[dict[str, object]]:
    """The JSON lines the process wrote (to stderr, captured in its log file); any other line is a failure."""
    lines = []
    for line in process.log_path.read_text(errors="replace").splitlines():
        if line.strip():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"{process.name} wrote a line that is not JSON: {line!r}")
    return lines


def wait_for_line(process: ManagedProcess, match: Callable[[dict[str, object]], bool],
                  timeout: float = 10) -> dict[str, object]:
    """The first line ``match`` accepts; polled, since a line is written just after the response is sent."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in log_lines(process) if match(line)]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no such line from {process.name}:\n{process.log_tail()}")
        time.sleep(0.1)


def access_line(process: ManagedProcess, request_id: str) -> dict[str, object]:
    return wait_for_line(process, lambda line: line["logger"] == "sporeprint.access"
                         and line.get("request_id") == request_id)


def test_the_request_id_is_echoed_and_on_the_access_line(settings: Settings,
                                                         run_service: Callable[..., ManagedProcess]) -> None:
    curator = run_service("curator", "services.curator.main:app", settings, JSON_LOGS)
    with httpx.Client(base_url=curator.url, timeout=30) as client:
        answer = client.get("/curations/0123456789abcdef", headers={"X-Request-ID": "abc123"})
        assert answer.status_code == 404
        assert answer.headers["X-Request-ID"] == "abc123"
        line = access_line(curator, "abc123")
        assert (line["method"], line["route"], line["status"]) == ("GET", "/curations/{curation_id}", 404)
        assert line["service"] == "curator" and line["level"] == "INFO"
        assert isinstance(line["duration_ms"], float) and str(line["client"]).startswith("127.0.0.1:")
        assert line["message"] == f"GET /curations/{{curation_id}} 404 {line['duration_ms']:.1f} ms"

        # Refused by the strict JSON guard before any route, and no route at all: both have an id and a line.
        refused = client.post("/curations", content=b'{"dataset": "fungi", "version": NaN}',
                              headers={**AUTH, "Content-Type": "application/json", "X-Request-ID": "nan-1"})
        assert (refused.status_code, refused.headers["X-Request-ID"]) == (422, "nan-1")
        assert access_line(curator, "nan-1")["status"] == 422
        missing = client.get("/no/such/route", headers={"X-Request-ID": "missing-1"})
        assert (missing.status_code, missing.headers["X-Request-ID"]) == (404, "missing-1")
        assert (access_line(curator, "missing-1")["route"], access_line(curator, "missing-1")["path"]) == (
            "other", "/no/such/route")

        # No id, or one that is not a sane token (too long, quotes, spaces, non-ASCII): a fresh one instead.
        fresh = []
        for given in [None, b"x" * 1000, b'abc"123', b"abc 123", "ab\u00e7".encode("latin-1")]:
            headers = {} if given is None else {b"X-Request-ID": given}
            answer = client.get("/health", headers=headers)
            request_id = answer.headers["X-Request-ID"]
            assert len(request_id) == 32 and int(request_id, 16) >= 0, request_id
            assert access_line(curator, request_id)["route"] == "/health"
            fresh.append(request_id)
        assert len(set(fresh)) == len(fresh)
    written = curator.log_path.read_text()
    assert "x" * 1000 not in written and 'abc\\"123' not in written


def test_a_job_logs_under_the_request_that_queued_it(settings: Settings, tmp_path: Path,
                                                     run_service: Callable[..., ManagedProcess],
                                                     run_worker: Callable[..., ManagedProcess]) -> None:
    """POST /harvests queues an RQ job; the worker logs it with the request's id and the job's id, and the
    blacklist it fetches from the curator (downloader -> curator over HTTP) is logged there under that id too."""
    curator = run_service("curator", "services.curator.main:app", settings, JSON_LOGS)
    downloader_settings = settings.model_copy(update={"curator_url": curator.url})
    downloader = run_service("downloader", "services.downloader.main:app", downloader_settings, JSON_LOGS)
    worker = run_worker("harvest-worker", ["harvest"], downloader_settings, JSON_LOGS)
    source = tmp_path / "fungi.csv"
    source.write_text("url,label\n" + "".join(f"http://photos.example/{n}.jpg,Psilocybe semilanceata\n"
                                              for n in range(3)))
    request_id = f"harvest-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=downloader.url, timeout=30, headers=AUTH) as client:
        with open(source, "rb") as stream:
            imported = client.post("/manifests", data={"dataset": "fungi"},
                                   files={"file": ("fungi.csv", stream, "text/csv")})
        assert imported.status_code == 201, imported.text
        # Only a species that is not in the manifest: every row is skipped, nothing is fetched from the web.
        started = client.post("/harvests", headers={"X-Request-ID": request_id},
                              json={"dataset": "fungi", "options": {"classes": ["Amanita muscaria"]}})
        assert started.status_code == 202, started.text
        assert started.headers["X-Request-ID"] == request_id
        harvest_id = started.json()["id"]
        deadline = time.monotonic() + 45
        while (view := client.get(f"/harvests/{harvest_id}").json())["state"] not in ("completed", "failed"):
            assert time.monotonic() < deadline, f"harvest did not finish: {view}\n{worker.log_tail()}"
            time.sleep(0.2)
    assert view["state"] == "completed", view
    job_id = view["job_id"]
    assert job_id and str(job_id).startswith(harvest_id)

    line = access_line(downloader, request_id)
    assert (line["method"], line["route"], line["status"]) == ("POST", "/harvests", 202)
    # The session's Redis is shared: this worker may also run jobs other tests left on the harvest queue, so
    # every line is matched by this harvest's job ids.
    in_job = wait_for_line(worker, lambda line: line["logger"] == "services.downloader.jobs"
                           and "blacklist from curator" in str(line["message"])
                           and str(line["job_id"]).startswith(harvest_id))
    # A harvest is several RQ jobs (plan, shards, merge: ids "<harvest>-..."); the jobs the plan queues inherit
    # the request's id too. Which of them fetched the blacklist, and which one the view names, may vary.
    assert (in_job["request_id"], in_job["service"]) == (request_id, "harvest-worker")
    assert str(in_job["job_id"]).startswith(harvest_id)
    rq_done = wait_for_line(worker, lambda line: "Job OK" in str(line["message"]) and line["job_id"] == job_id)
    assert rq_done["request_id"] == request_id
    called = access_line(curator, request_id)
    assert (called["method"], called["route"], called["status"]) == ("GET", "/blacklist", 200)
