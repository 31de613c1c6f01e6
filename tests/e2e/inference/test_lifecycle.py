"""No model yet, first promotion, hot swap under load, and refusal of models that cannot serve."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

from fixtureweb.web import FixtureWebInfo
from services.inference.answers import UNCERTAIN, best_genus
from services.inference.fetch import URL_REFUSED
from services.inference.predictor import NO_MODEL
from sporeprint.stack import StackState
from tests.e2e.inference.conftest import (
    CATALOG,
    FixtureModel,
    Reference,
    Served,
    encode,
    publish_model,
    served_model_id,
    species_photo,
    start_inference,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.ml]


def test_no_model_first_promotion_hot_swap_under_load_and_refusals(
        stack: StackState, fixture_model: FixtureModel, wrong_shape_model: Path, fixture_web: FixtureWebInfo,
        reference: Reference, tmp_path: Path) -> None:
    """One service's life (starting TensorFlow costs seconds, so one process walks through all of it)."""
    env = {
        "SPOREPRINT_INFERENCE_POLL_INTERVAL_S": "0.3",
        "SPOREPRINT_INFERENCE_MAX_WAIT_MS": "3",
        "SPOREPRINT_INFERENCE_UNCERTAIN_BELOW": "0.9999",  # every answer is uncertain: the genus fallback shows
    }
    served = start_inference(stack, tmp_path, env)
    try:
        check_no_model_then_first_promotion(served, fixture_model, reference)
        check_hot_swap_under_load_and_refusals(served, fixture_model, wrong_shape_model)
        check_loopback_refused_by_default(served, fixture_web)
    finally:
        served.service.stop()


def check_no_model_then_first_promotion(served: Served, fixture_model: FixtureModel, reference: Reference) -> None:
    photo = encode(species_photo(1, seed=4))
    response = httpx.post(f"{served.url}/predict", files={"file": ("p.jpg", photo, "image/jpeg")})
    assert response.status_code == 503 and response.json()["detail"] == NO_MODEL
    by_url = httpx.post(f"{served.url}/predict", json={"url": "http://10.0.0.1/x.jpg"})
    assert by_url.status_code == 503
    ready = httpx.get(f"{served.url}/ready")
    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert httpx.get(f"{served.url}/model").status_code == 503
    assert httpx.get(f"{served.url}/health").status_code == 200

    publish_model(served.store, "model-a", fixture_model.path, fixture_model.classes,
                      open_set=fixture_model.openset, bank=fixture_model.bank)
    wait_until(lambda: served_model_id(served.url) == "model-a", what="the first promoted model")

    answer = httpx.post(f"{served.url}/predict", files={"file": ("p.jpg", photo, "image/jpeg")}).json()
    assert answer["verdict"] == "uncertain" and answer["message"] == UNCERTAIN
    probabilities = reference.probabilities(photo)
    expected = best_genus(probabilities, fixture_model.classes)
    members = [sp.index for sp in CATALOG.species if sp.genus.name == expected.name]
    assert answer["genus"]["name"] == expected.name
    assert answer["genus"]["family"] == CATALOG[members[0]].family
    assert answer["genus"]["probability"] == pytest.approx(float(np.sum(probabilities[members])), abs=1e-4)


def check_hot_swap_under_load_and_refusals(served: Served, fixture_model: FixtureModel,
                                           wrong_shape_model: Path) -> None:
    photos = [encode(species_photo(i % 6, seed=30 + i)) for i in range(6)]
    stop = threading.Event()
    outcomes: Counter[tuple[int, str | None]] = Counter()
    lock = threading.Lock()

    def load(worker: int) -> None:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            i = worker
            while not stop.is_set():
                response = client.post("/predict", files={"file": ("p.jpg", photos[i % len(photos)], "image/jpeg")})
                model_id = response.json().get("model_id") if response.status_code == 200 else response.text
                with lock:
                    outcomes[(response.status_code, model_id)] += 1
                i += 1

    threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: outcomes[(200, "model-a")] >= 10, what="load on model-a")
        publish_model(served.store, "model-b", fixture_model.path, fixture_model.classes,
                      open_set=fixture_model.openset, bank=fixture_model.bank)
        wait_until(lambda: outcomes[(200, "model-b")] >= 10, what="answers from model-b")

        # A model file that is not a model, and one whose output does not match its card: both refused.
        publish_model(served.store, "broken-model", b"PK\x03\x04 not really a keras archive", fixture_model.classes)
        wait_until(lambda: (httpx.get(f"{served.url}/model").json()["refused"] or {}).get("model_id")
                   == "broken-model", what="the broken model to be refused")
        assert "does not load" in httpx.get(f"{served.url}/model").json()["refused"]["reason"]
        publish_model(served.store, "wrong-shape", wrong_shape_model, fixture_model.classes)
        wait_until(lambda: (httpx.get(f"{served.url}/model").json()["refused"] or {}).get("model_id")
                   == "wrong-shape", what="the wrong-shape model to be refused")
        settled = sum(outcomes.values())
        wait_until(lambda: sum(outcomes.values()) >= settled + 10, what="more load after the refusals")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    model = httpx.get(f"{served.url}/model").json()
    assert model["model_id"] == "model-b"
    assert "answered shape (2, 3); its card has 6 classes" in model["refused"]["reason"]
    assert set(outcomes) <= {(200, "model-a"), (200, "model-b")}, outcomes  # no failed request, ever
    assert outcomes[(200, "model-a")] >= 10
    metrics = httpx.get(f"{served.url}/metrics").text
    assert "sporeprint_inference_model_refusals_total 2.0" in metrics
    assert "sporeprint_inference_model_swaps_total 2.0" in metrics


def check_loopback_refused_by_default(served: Served, fixture_web: FixtureWebInfo) -> None:
    """This service keeps the default SSRF rules: loopback is refused too (by IP and by name)."""
    photo_url = fixture_web.url(fixture_web.domains[0], "/species/1/3.jpg", style="path")
    urls = [photo_url, photo_url.replace("127.0.0.1", "localhost")]
    if ipaddress.ip_address(socket.gethostbyname(socket.gethostname())).is_loopback:
        # A name only the resolver knows to be loopback: refused at connect time by the guarded resolver.
        urls.append(photo_url.replace("127.0.0.1", socket.gethostname()))
    for url in urls:
        refused = httpx.post(f"{served.url}/predict", json={"url": url})
        assert refused.status_code == 400 and refused.json()["detail"].startswith(URL_REFUSED)
