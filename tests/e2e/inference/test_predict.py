"""/predict, /predict/batch, /model and /metrics of the inference service under uvicorn, on the real S3 store."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from fixtureweb.irrelevant import IrrelevantKind
from fixtureweb.web import FixtureWebInfo
from services.inference.answers import NOT_A_MUSHROOM
from services.inference.api.body import BAD_MULTIPART, TOO_MANY_FILES
from services.inference.api.routes.predict import BAD_JSON, NO_FILE, NO_FILES, UNSUPPORTED_MEDIA
from services.inference.fetch import URL_FETCH_FAILED, URL_REFUSED
from services.inference.images import (
    EMPTY_UPLOAD,
    NOT_AN_IMAGE,
    TOO_MANY_PIXELS,
    TRUNCATED_IMAGE,
    UNSUPPORTED_FORMAT,
    UPLOAD_TOO_LARGE,
)
from services.inference.schemas import SAFETY_NOTICE
from tests.e2e.inference.conftest import (
    CATALOG,
    MAX_UPLOAD,
    N_CLASSES,
    Reference,
    Served,
    encode,
    irrelevant_photo,
    species_photo,
)

pytestmark = [pytest.mark.e2e, pytest.mark.ml]


def post_photo(served: Served, data: bytes, filename: str = "photo.jpg", content_type: str = "image/jpeg",
               params: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{served.url}/predict", files={"file": (filename, data, content_type)}, params=params,
                      timeout=30)


def probabilities_by_label(answer: dict) -> dict[str, float]:
    return {p["label"]: p["probability"] for p in answer["predictions"]}


def test_species_photos_get_the_models_answer_with_taxa(served: Served, reference: Reference) -> None:
    for index in range(N_CLASSES):
        data = encode(species_photo(index, seed=7))
        response = post_photo(served, data)
        assert response.status_code == 200, response.text
        answer = response.json()
        expected = reference.probabilities(data)
        assert answer["model_id"] == "fixture-a"
        assert answer["safety_notice"] == SAFETY_NOTICE
        assert answer["elapsed_ms"] > 0
        assert answer["ood_score"] == pytest.approx(reference.ood(data), abs=1e-4)
        assert 0 <= answer["relevance_score"] <= 1 and answer["gate_version"].startswith("efficientnet_lite0-")
        if answer["verdict"] in ("not_a_mushroom", "unknown_species"):  # unlike its training photos
            assert reference.ood(data) > 1.0 and answer["predictions"] == []
            continue
        assert len(answer["predictions"]) == 5  # default top-k
        top = answer["predictions"][0]
        assert top["label"] == CATALOG[int(np.argmax(expected))].name
        species = CATALOG.by_name(top["label"])
        assert (top["species"], top["genus"], top["family"]) == (species.name, species.genus.name, species.family)
        for label, probability in probabilities_by_label(answer).items():
            assert probability == pytest.approx(float(expected[CATALOG.by_name(label).index]), abs=1e-4)
        uncertain_below = reference.card.uncertain_below
        assert answer["verdict"] == ("confident" if expected.max() >= uncertain_below else "uncertain")


def test_model_recognises_most_species(served: Served) -> None:
    """The served model is a real classifier: most held-out photos get their own species on top."""
    right = 0
    for index in range(N_CLASSES):
        for seed in (1, 2):
            answer = post_photo(served, encode(species_photo(index, seed))).json()
            right += bool(answer["predictions"]) and answer["predictions"][0]["label"] == CATALOG[index].name
    assert right >= 8


def test_formats_and_raw_bodies(served: Served, reference: Reference) -> None:
    photo = species_photo(3, seed=11)
    png = encode(photo, "PNG")
    for data, name, content_type in [(png, "p.png", "image/png"), (encode(photo, "WEBP", lossless=True), "p.webp",
                                     "image/webp"), (encode(photo, "JPEG", quality=90), "p.jpg", "image/jpeg")]:
        response = post_photo(served, data, name, content_type)
        assert response.status_code == 200, (name, response.text)
    raw = httpx.post(f"{served.url}/predict", content=png, headers={"Content-Type": "image/png"}, timeout=30)
    assert raw.status_code == 200
    if raw.json()["predictions"]:
        top2 = post_photo(served, png, "p.png", "image/png", params={"top_k": "2"}).json()
        assert len(top2["predictions"]) == 2
    assert post_photo(served, png, "p.png", "image/png", params={"top_k": "0"}).status_code == 422
    assert raw.json()["ood_score"] == pytest.approx(reference.ood(png), abs=1e-4)


def test_exif_orientation_is_honoured(served: Served) -> None:
    upright = species_photo(4, seed=5, size=128)
    stored_sideways = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways stores
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display, which undoes ROTATE_90 (counter-clockwise)
    with_exif = encode(stored_sideways, "PNG", exif=exif.tobytes())
    answers = {name: post_photo(served, data, "p.png", "image/png").json() for name, data in
               [("upright", encode(upright, "PNG")), ("exif", with_exif), ("sideways", encode(stored_sideways, "PNG"))]}
    assert answers["exif"]["ood_score"] == pytest.approx(answers["upright"]["ood_score"], abs=1e-5)
    assert probabilities_by_label(answers["exif"]) == pytest.approx(probabilities_by_label(answers["upright"]),
                                                                    abs=1e-5)
    assert answers["sideways"]["ood_score"] != pytest.approx(answers["upright"]["ood_score"], abs=1e-5)


def test_not_a_mushroom_photo_is_not_guessed(served: Served, reference: Reference) -> None:
    """Drawn sheets and envelopes: refused by the gate unless the model finds them like its training photos."""
    kinds = list(IrrelevantKind)
    named = 0
    for seed in range(8):
        data = encode(irrelevant_photo(seed, kinds[seed % len(kinds)]))
        answer = post_photo(served, data).json()
        assert answer["safety_notice"] == SAFETY_NOTICE
        familiar = reference.ood(data) <= 1.0
        if answer["verdict"] == "not_a_mushroom":
            assert answer["predictions"] == [] and answer["message"] == NOT_A_MUSHROOM
            assert answer["relevance_score"] < 0.5 and not familiar
        elif answer["verdict"] == "unknown_species":
            assert answer["predictions"] == [] and answer["relevance_score"] >= 0.5 and not familiar
        else:
            assert familiar  # only a photo within the model's own threshold gets a species
            named += 1
    assert named <= 1


def test_noise_and_flat_images_are_never_named(served: Served) -> None:
    rng = np.random.default_rng(5)
    images = [Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)),
              Image.new("RGB", (100, 100), (128, 128, 128)), Image.new("RGB", (100, 100), (20, 90, 30))]
    for image in images:
        answer = post_photo(served, encode(image, "PNG"), "x.png", "image/png").json()
        assert answer["verdict"] == "not_a_mushroom", answer
        assert answer["predictions"] == []


def _bomb_png() -> bytes:
    return encode(Image.new("1", (4000, 4000)), "PNG")  # 16 Mpx > the 4 Mpx limit, a few kB on the wire


def _truncated_jpeg() -> bytes:
    data = encode(species_photo(0, seed=1, size=256), quality=95)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("name", "data", "content_type", "status", "detail"),
    [
        ("empty.jpg", b"", "image/jpeg", 400, EMPTY_UPLOAD),
        ("notes.jpg", b"these are my field notes, not a photo" * 20, "image/jpeg", 415, NOT_AN_IMAGE),
        ("html.jpg", b"<!doctype html><html><body>login</body></html>", "image/jpeg", 415, NOT_AN_IMAGE),
        ("anim.gif", "gif", "image/gif", 415, UNSUPPORTED_FORMAT),
        ("half.jpg", "truncated", "image/jpeg", 422, TRUNCATED_IMAGE),
        ("bomb.png", "bomb", "image/png", 413, TOO_MANY_PIXELS),
        ("huge.jpg", b"\xff\xd8" + b"\0" * (MAX_UPLOAD + 10), "image/jpeg", 413, UPLOAD_TOO_LARGE),
    ],
)
def test_bad_uploads_get_a_clear_4xx(served: Served, name: str, data: bytes | str, content_type: str, status: int,
                                     detail: str) -> None:
    if data == "gif":
        data = encode(species_photo(0, seed=1, size=64), "GIF")
    elif data == "truncated":
        data = _truncated_jpeg()
    elif data == "bomb":
        data = _bomb_png()
    assert isinstance(data, bytes)
    response = post_photo(served, data, name, content_type)
    assert response.status_code == status, response.text
    assert response.json()["detail"] == detail


def test_bad_requests_get_a_clear_4xx(served: Served) -> None:
    url = f"{served.url}/predict"
    cases = [
        (httpx.post(url, content=b"", headers={"Content-Type": "image/jpeg"}), 400, EMPTY_UPLOAD),
        (httpx.post(url, content=b"hello", headers={"Content-Type": "text/plain"}), 415, UNSUPPORTED_MEDIA),
        (httpx.post(url, data={"note": "no file"}, files={"other": ("", b"", "text/plain")}), 400, None),
        (httpx.post(url, json={"link": "http://x"}), 422, BAD_JSON),
        (httpx.post(url, content=b"{not json", headers={"Content-Type": "application/json"}), 422, BAD_JSON),
        (httpx.post(url, content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=x"}),
         400, None),
    ]
    for response, status, detail in cases:
        assert response.status_code == status, response.text
        if detail is not None:
            assert response.json()["detail"] == detail
    no_file = httpx.post(url, files={"notes": (None, b"just a field")})
    assert no_file.status_code == 400 and no_file.json()["detail"] == NO_FILE
    broken = cases[-1][0].json()["detail"]
    assert broken.startswith(BAD_MULTIPART) or broken == NO_FILE


@pytest.mark.parametrize(
    ("url", "status", "prefix"),
    [
        ("http://10.0.0.1/x.jpg", 400, URL_REFUSED),
        ("http://169.254.169.254/latest/meta-data/", 400, URL_REFUSED),
        ("http://[fd00::1]/x.jpg", 400, URL_REFUSED),
        ("http://192.168.1.20:8080/photo.png", 400, URL_REFUSED),
        ("ftp://example.org/x.jpg", 400, URL_REFUSED),
        ("file:///etc/passwd", 400, URL_REFUSED),
        ("not a url", 400, URL_REFUSED),
    ],
)
def test_urls_to_private_addresses_are_refused(served: Served, url: str, status: int, prefix: str) -> None:
    response = httpx.post(f"{served.url}/predict", json={"url": url}, timeout=30)
    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(prefix)


def test_predict_by_url(served: Served, fixture_web: FixtureWebInfo, reference: Reference) -> None:
    domain = fixture_web.domains[0]
    photo_url = fixture_web.url(domain, "/species/2/21.jpg", style="path")
    expected = reference.probabilities(httpx.get(photo_url).content)
    response = httpx.post(f"{served.url}/predict", json={"url": photo_url}, timeout=30)
    assert response.status_code == 200, response.text
    answer = response.json()
    if answer["predictions"]:
        assert answer["predictions"][0]["label"] == CATALOG[int(np.argmax(expected))].name
    redirected = httpx.post(f"{served.url}/predict", json={
        "url": fixture_web.url(domain, "/fault/redirect/21.jpg", style="path")}, timeout=30)
    assert redirected.status_code == 200, redirected.text
    for path, status, prefix in [
        ("/fault/redirect-private/3.jpg", 400, URL_REFUSED),  # the redirect target is checked like the URL
        ("/fault/not-found/3.jpg", 422, URL_FETCH_FAILED),
        ("/fault/html-as-image/3.jpg", 415, NOT_AN_IMAGE),
        ("/fault/truncated/3.jpg", 422, TRUNCATED_IMAGE),
        ("/fault/oversized/3.jpg", 422, URL_FETCH_FAILED),
        ("/fault/oversized-chunked/3.jpg", 422, URL_FETCH_FAILED),
        ("/fault/bomb/3.png", 413, TOO_MANY_PIXELS),
        ("/fault/empty/3.jpg", 400, EMPTY_UPLOAD),
        ("/fault/redirect-loop/3.jpg", 422, URL_FETCH_FAILED),
    ]:
        response = httpx.post(f"{served.url}/predict", json={"url": fixture_web.url(domain, path, style="path")},
                              timeout=30)
        assert response.status_code == status, (path, response.text)
        assert response.json()["detail"].startswith(prefix), (path, response.text)


def test_batch_with_a_bad_item_and_explanations(served: Served) -> None:
    files = [
        ("files", ("a.jpg", encode(species_photo(0, seed=3)), "image/jpeg")),
        ("files", ("b.txt", b"not an image at all", "image/jpeg")),
        ("files", ("c.png", encode(species_photo(5, seed=3), "PNG"), "image/png")),
    ]
    response = httpx.post(f"{served.url}/predict/batch", files=files, params={"explain": "true"}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["safety_notice"] == SAFETY_NOTICE
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert [r["filename"] for r in results] == ["a.jpg", "b.txt", "c.png"]
    assert results[1]["status_code"] == 415 and results[1]["error"] == NOT_AN_IMAGE and results[1]["prediction"] is None
    for item in (results[0], results[2]):
        prediction = item["prediction"]
        assert item["status_code"] == 200 and prediction["model_id"] == "fixture-a"
        if prediction["predictions"]:
            heatmap = Image.open(io.BytesIO(base64.b64decode(prediction["heatmap_png"])))
            assert heatmap.format == "PNG" and heatmap.size == (224, 224)
    plain = post_photo(served, encode(species_photo(0, seed=3))).json()
    assert plain["heatmap_png"] is None


def test_bad_batches(served: Served) -> None:
    url = f"{served.url}/predict/batch"
    too_many = [("files", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(9)]
    response = httpx.post(url, files=too_many)
    assert response.status_code == 413 and response.json()["detail"] == f"{TOO_MANY_FILES} (at most 8)"
    two = [("file", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(2)]
    response = httpx.post(f"{served.url}/predict", files=two)
    assert response.status_code == 413 and response.json()["detail"] == f"{TOO_MANY_FILES} (at most 1)"
    response = httpx.post(url, files={"notes": (None, b"no files")})
    assert response.status_code == 400 and response.json()["detail"] == NO_FILES
    response = httpx.post(url, json={"url": "http://example.org/x.jpg"})
    assert response.status_code == 415 and response.json()["detail"] == UNSUPPORTED_MEDIA


def test_model_health_ready_and_metrics(served: Served) -> None:
    model = httpx.get(f"{served.url}/model").json()
    assert model["model_id"] == "fixture-a"
    assert [c["name"] for c in model["classes"]] == [sp.name for sp in CATALOG.species]
    assert model["classes"][1]["genus"] == CATALOG[1].genus.name
    assert model["manifest_version"] == 3 and model["metrics"]["top1"] == 0.9 and model["image_size"] == 48
    assert model["refused"] is None
    assert httpx.get(f"{served.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{served.url}/ready").json() == {"ready": True, "model_id": "fixture-a", "detail": None}

    before = sum(_metric(served, f'sporeprint_inference_predictions_total{{verdict="{v}"}}')
                 for v in ("confident", "uncertain", "unknown_species", "not_a_mushroom"))
    assert post_photo(served, b"").status_code == 400
    post_photo(served, encode(species_photo(1, seed=9)))
    text = httpx.get(f"{served.url}/metrics").text
    assert 'sporeprint_inference_requests_total{endpoint="/predict",status="200"}' in text
    assert _metric(served, 'sporeprint_inference_errors_total{endpoint="/predict",status="400"}') >= 1
    assert _metric(served, 'sporeprint_inference_request_latency_seconds_count{endpoint="/predict"}') >= 2
    # Every prediction went through the batcher: the batch sizes add up to the answers given.
    answers = sum(_metric(served, f'sporeprint_inference_predictions_total{{verdict="{v}"}}')
                  for v in ("confident", "uncertain", "unknown_species", "not_a_mushroom"))
    assert answers == before + 1
    assert _metric(served, "sporeprint_inference_batch_size_sum") >= answers


def _metric(served: Served, name: str) -> float:
    for line in httpx.get(f"{served.url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0
