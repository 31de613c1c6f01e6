"""The console's views against one real stack per module: the four services and the console under uvicorn, a
training worker, the real S3 server and Redis; a sweep of two tiny training runs (with fine-tuning) on a
synthetic dataset whose manifest versions form an import -> harvest -> curation chain.

Screenshots go to one directory per session, printed in pytest's summary.
"""

from __future__ import annotations

import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import SecretStr

from fixtureweb.harvested import write_synthetic_manifest
from shared.manifests import ManifestStore
from shared.schemas import HarvestStatus, Operation
from shared.settings import Environment, Settings
from shared.storage import ObjectStore
from sporeprint.processes import ManagedProcess, spawn, start_service
from sporeprint.stack import StackState, free_port

SERVICES = {
    "downloader": "services.downloader.main:app",
    "curator": "services.curator.main:app",
    "trainer": "services.trainer.main:app",
    "inference": "services.inference.main:app",
}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
TOKEN = "console-e2e-" + uuid.uuid4().hex
DATASET = "console-fungi"
IMAGE_SIZE = 32
SCREENSHOTS: list[Path] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SCREENSHOTS:
        terminalreporter.write_sep("-", "console screenshots")
        for path in SCREENSHOTS:
            terminalreporter.write_line(str(path))


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-screenshots")


@pytest.fixture
def screenshot(screenshot_dir: Path, request: pytest.FixtureRequest) -> Callable[..., Path]:
    def take(page: Any, name: str) -> Path:
        path = screenshot_dir / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        SCREENSHOTS.append(path)
        return path

    return take


def env_of(settings: Settings) -> dict[str, str]:
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        secret = getattr(settings, name)
        if isinstance(secret, SecretStr):
            value = secret.get_secret_value()
        if value is not None:
            env[f"SPOREPRINT_{name.upper()}"] = str(value)
    return env


def write_lineage(store: ObjectStore) -> int:
    """import (v1) -> harvest (v2) -> curation (v3) of one synthetic dataset; returns the curated version."""
    rendered = write_synthetic_manifest(store, "console-render", n_classes=3, images_per_class=32, size=IMAGE_SIZE)
    manifests = ManifestStore(store)
    harvested = manifests.read("console-render", rendered.version)
    pending = harvested
    for column, value in (("status", HarvestStatus.pending.value),):
        pending = pending.set_column(pending.schema.get_field_index(column), column,
                                     pa.array([value] * pending.num_rows, pending.schema.field(column).type))
    for column in ("storage_key", "sha256", "error"):
        index = pending.schema.get_field_index(column)
        pending = pending.set_column(index, column, pa.nulls(pending.num_rows, pending.schema.field(column).type))
    imported = manifests.write(DATASET, pending, Operation.import_, source="csv:console-fungi.csv",
                               stats={"rows": pending.num_rows})
    ok = int(pc.sum(pc.equal(harvested.column("status"), HarvestStatus.ok.value)).as_py())
    harvest = manifests.write(DATASET, harvested, Operation.harvest, parent=imported.version,
                              source="harvest:h-console-1", stats={"ok": ok, "failed": harvested.num_rows - ok})
    curated = manifests.write(DATASET, harvested, Operation.curation, parent=harvest.version,
                              source="curation 0123456789abcdef", stats={"kept": ok, "excluded_irrelevant": 1})
    return curated.version


def sweep_spec(version: int) -> dict[str, Any]:
    """Two tiny CNN runs (4 head epochs + 2 fine-tuning epochs) that differ in learning rate."""
    return {
        "name": "console sweep",
        "base": {
            "name": "console",
            "data": {"dataset": DATASET, "manifest_version": version, "image_size": IMAGE_SIZE,
                     "min_images_per_class": 5},
            "backbone": {"name": "tiny_cnn", "weights": "none"},
            "optimizer": {"learning_rate": 3e-3},
            "batch_size": 16,
            "epochs": 4,
            "fine_tune": {"enabled": True, "epochs": 2, "learning_rate": 1e-3},
            "augmentation": {"rotation": 0, "flip_horizontal": True, "zoom": 0, "brightness": 0, "contrast": 0},
            "callbacks": {"early_stopping": {"enabled": False}},
            "export": {"saved_model": False, "tflite_float16": False},
            "openset": {"method": "knn", "knn_k": 5},
        },
        "grid": {"optimizer.learning_rate": [3e-3, 1e-3]},
    }


def submit_live_job(trainer: str, version: int) -> str:
    """3 head epochs + 1 of fine-tuning, for the job page to follow."""
    spec = {**sweep_spec(version)["base"], "name": "live", "epochs": 3,
            "fine_tune": {"enabled": True, "epochs": 1, "learning_rate": 1e-3}}
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        answer = http.post(f"{trainer}/jobs", json=spec)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["job_id"])


@dataclass
class ConsoleStack:
    url: str
    trainer: str
    inference: str
    settings: Settings
    store: ObjectStore
    version: int
    sweep_id: str
    job_ids: list[str]
    live_job_id: str
    worker: ManagedProcess

    def http(self) -> httpx.Client:
        return httpx.Client(timeout=30, headers={"Authorization": f"Bearer {TOKEN}"})

    def submit_live_job(self) -> str:
        return submit_live_job(self.trainer, self.version)

    def wait_jobs(self, timeout: float = 240) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.http() as http:
            while time.monotonic() < deadline:
                jobs = [http.get(f"{self.trainer}/jobs/{job_id}").json() for job_id in self.job_ids]
                if all(job["state"] in ("completed", "failed", "cancelled") for job in jobs):
                    assert all(job["state"] == "completed" for job in jobs), jobs
                    return jobs
                if not self.worker.alive():
                    pytest.fail(f"the training worker died:\n{self.worker.log_tail()}")
                time.sleep(0.5)
        pytest.fail(f"the sweep did not finish:\n{self.worker.log_tail()}")


@pytest.fixture(scope="module")
def console_stack(stack: StackState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    work = tmp_path_factory.mktemp("console-work")
    settings = Settings(environment=Environment.test, s3_endpoint=stack.s3_endpoint, s3_access_key=stack.access_key,
                        s3_secret_key=stack.secret_key, s3_bucket=f"cv-{uuid.uuid4().hex[:12]}",
                        redis_url=stack.redis_url, api_token=TOKEN, work_dir=str(work))
    store = ObjectStore.from_settings(settings)
    store.ensure_bucket()
    version = write_lineage(store)
    env = {**env_of(settings), "SPOREPRINT_INFERENCE_POLL_INTERVAL_S": "0.5"}
    ports = {name: free_port() for name in (*SERVICES, "console")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    logs = tmp_path_factory.mktemp("console-logs")
    started: list[ManagedProcess] = []

    def start(name: str) -> ManagedProcess:
        app = SERVICES.get(name, "sporeprint.console.app:app")
        extra = ({f"SPOREPRINT_{k.upper()}_URL": v for k, v in urls.items() if k in SERVICES}
                 if name == "console" else {})
        return start_service(name, app, {**env, **extra}, logs, port=ports[name], timeout=240)

    try:
        proc, log_path = spawn("train-worker", [sys.executable, "-m", "services.trainer.worker", "train"], env, logs)
        worker = ManagedProcess("train-worker", proc, log_path, None, env)
        started.append(worker)
        # the trainer first: the sweep trains while the other services start (in parallel: TensorFlow is slow to load)
        started.append(start("trainer"))
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            answer = http.post(f"{urls['trainer']}/sweeps", json=sweep_spec(version))
            assert answer.status_code == 202, answer.text
        sweep = answer.json()
        live_job_id = submit_live_job(urls["trainer"], version)  # queued behind the sweep's runs
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(start, name) for name in ("inference", "downloader", "curator", "console")]
        failures = []
        for future in futures:
            try:
                started.append(future.result())
            except Exception as exc:  # noqa: BLE001 - the others are stopped below, then this is raised
                failures.append(exc)
        if failures:
            raise failures[0]
        yield ConsoleStack(url=urls["console"], trainer=urls["trainer"], inference=urls["inference"],
                           settings=settings, store=store, version=version, sweep_id=sweep["sweep_id"],
                           job_ids=[job["job_id"] for job in sweep["jobs"]], live_job_id=live_job_id,
                           worker=worker)
    finally:
        for process in reversed(started):
            process.stop()


@dataclass
class Browser:
    page: Any
    errors: list[str]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (make test installs it when run as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def record_failures(page: Any) -> list[str]:
    """Every console error, page error and failed request of ``page`` from now on (the favicon once answered
    404 on every load): a browser test asserts the list stays empty."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(f"console {message.type}: {message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("response", lambda response: errors.append(f"HTTP {response.status} {response.url}")
            if response.status >= 400 else None)
    return errors


@pytest.fixture
def browser_page(chromium: Any, console_stack: ConsoleStack) -> Iterator[Browser]:
    """A fresh page (with the API token stored); the test fails on any console error or failed request."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(f"localStorage.setItem('sporeprint-token', {TOKEN!r})")
    page = context.new_page()
    errors = record_failures(page)
    try:
        yield Browser(page, errors)
        assert errors == [], errors
    finally:
        context.close()
