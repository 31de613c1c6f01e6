"""The web console against the four real services (uvicorn, real S3 server): its API contract through the
proxy, and the page itself in headless Chromium (Debian's chromium driven by Playwright)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtureweb import SpeciesCatalog
from shared.clients.downloader import DownloaderClient
from shared.registry import ClassLabel, ModelCard, ModelRegistry, ModelStatus
from shared.settings import Settings
from shared.storage import ObjectStore
from sporeprint.processes import ManagedProcess

from .conftest import SERVICES, record_failures


def publish_tiny_model(store: ObjectStore, model_id: str, tmp_path: Path) -> None:
    """A complete (untrained) model in the registry format, so the Models tab has something to promote."""
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    path = tmp_path / "model.keras"
    model.save(path)
    store.put_file(f"models/{model_id}/model.keras", path)
    catalog = SpeciesCatalog(2, 0)
    classes = [ClassLabel(index=i, name=sp.name, species=sp.name, genus=sp.genus.name, family=sp.family)
               for i, sp in enumerate(catalog.species)]
    ModelRegistry(store).save_card(ModelCard(
        model_id=model_id, status=ModelStatus.complete, created_at=datetime.now(UTC), dataset="console",
        manifest_version=1, backbone="tiny_cnn", image_size=32, classes=classes,
        metrics={"top1": 0.5, "top3": 1.0, "macro_f1": 0.4}, artifacts=["model.keras"]))


@pytest.fixture
def console(settings: Settings, store: ObjectStore, tmp_path: Path, gbif_sample: Path,
            run_service: Callable[..., ManagedProcess]) -> Iterator[str]:
    urls = {}
    for name, app in SERVICES.items():
        urls[f"SPOREPRINT_{name.upper()}_URL"] = run_service(
            name, app, settings, {"SPOREPRINT_INFERENCE_POLL_INTERVAL_S": "0.5"}).url
    console = run_service("console", "sporeprint.console.app:app", settings, urls)
    with DownloaderClient(urls["SPOREPRINT_DOWNLOADER_URL"], settings.api_token) as downloader:
        downloader.import_source("psilocybe", gbif_sample, species="Psilocybe semilanceata")
    publish_tiny_model(store, "m-console-1", tmp_path)
    yield console.url


@pytest.mark.e2e
@pytest.mark.contract
def test_console_proxy_serves_what_the_page_reads(console: str, settings: Settings) -> None:
    health = httpx.get(f"{console}/health").json()
    assert health["services"] == dict.fromkeys(SERVICES, "ok")
    datasets = httpx.get(f"{console}/api/downloader/manifests").json()
    assert any(row["dataset"] == "psilocybe" for row in datasets)
    blacklist = httpx.get(f"{console}/api/curator/blacklist").json()
    assert {"mycoportal.org", "unimus.no/felles/"} <= {entry["entry"] for entry in blacklist["entries"]}
    models = httpx.get(f"{console}/api/trainer/models").json()
    assert [model["model_id"] for model in models] == ["m-console-1"]
    assert isinstance(httpx.get(f"{console}/api/trainer/jobs").json(), list)
    # mutations pass the person's token through, and nothing else
    refused = httpx.post(f"{console}/api/trainer/models/m-console-1/promote")
    assert refused.status_code == 401
    promoted = httpx.post(f"{console}/api/trainer/models/m-console-1/promote",
                          headers={"Authorization": f"Bearer {settings.api_token}"})
    assert promoted.status_code == 200, promoted.text
    assert httpx.get(f"{console}/api/nowhere/x").status_code == 404


@pytest.mark.e2e
@pytest.mark.browser
def test_console_in_headless_chromium(console: str, settings: Settings, tmp_path: Path, chromium: Any) -> None:
    from playwright.sync_api import expect

    photo = tmp_path / "photo.jpg"
    SpeciesCatalog(2, 0).render(0, 4242, 128).convert("RGB").save(photo, "JPEG")
    page = chromium.new_page()
    try:
        errors = record_failures(page)
        page.goto(console)
        expect(page.locator("#datasets-out table")).to_contain_text("psilocybe")
        expect(page.locator("#datasets-out a", has_text="versions & models")).to_have_attribute(
            "href", "#lineage/dataset/psilocybe/1")

        page.click("button[data-tab=blacklist]")
        expect(page.locator("#blacklist-out table")).to_contain_text("mycoportal.org")
        page.fill("#token", settings.api_token)
        page.dispatch_event("#token", "change")
        page.fill("#blacklist-form [name=entry]", "scans.example.org/sheets/")
        page.fill("#blacklist-form [name=reason]", "specimen scans")
        page.click("#blacklist-form button")
        expect(page.locator("#blacklist-out table")).to_contain_text("scans.example.org/sheets/")

        page.click("button[data-tab=models]")
        expect(page.locator("#models-out table")).to_contain_text("m-console-1")
        page.click("#models-out button.promote")
        expect(page.locator("#models-out button.promote")).to_have_text("promoted")

        for _ in range(120):  # the inference service picks up the promoted pointer within a poll or two
            served = httpx.get(f"{console}/api/inference/model")
            if served.status_code == 200 and served.json()["model_id"] == "m-console-1":
                break
            time.sleep(0.5)
        page.click("button[data-tab=predict]")
        page.set_input_files("#predict-form input[type=file]", str(photo))
        page.click("#predict-form button")
        verdict = page.locator("#predict-out .verdict")
        expect(verdict).to_contain_text("m-console-1")
        verdicts = {"confident", "uncertain", "unknown_species", "not_a_mushroom"}
        assert verdict.locator("b").text_content() in verdicts
        expect(page.locator("#predict-out")).to_contain_text("Never eat")
        page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
        assert errors == [], errors
    finally:
        page.close()
