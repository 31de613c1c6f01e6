"""POST /predict/observation: several photos of one mushroom, one answer, under uvicorn on the real S3 store."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from services.inference.answers import NO_MUSHROOM_PHOTO
from services.inference.api.body import NOT_A_FILE_PART
from services.inference.api.routes.predict import NO_PHOTOS, TOO_MANY_PHOTOS, UNSUPPORTED_MEDIA
from services.inference.images import EMPTY_UPLOAD, NOT_AN_IMAGE
from services.inference.schemas import SAFETY_NOTICE
from shared import openset
from shared.clients.inference import InferenceClient
from tests.e2e.inference.conftest import (
    CATALOG,
    MAX_OBSERVATION_PHOTOS,
    Reference,
    Served,
    encode,
    species_photo,
)

pytestmark = [pytest.mark.e2e, pytest.mark.ml]


def post_observation(served: Served, photos: list[tuple[str, bytes]], **params: str) -> httpx.Response:
    files = [("files", (name, data, "image/jpeg")) for name, data in photos]
    return httpx.post(f"{served.url}/predict/observation", files=files, params=params, timeout=60)


def single(served: Served, data: bytes) -> dict:
    response = httpx.post(f"{served.url}/predict", files={"file": ("p.jpg", data, "image/jpeg")}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_photos_of_one_mushroom_get_the_mean_of_their_logits(served: Served, reference: Reference) -> None:
    photos = [(f"{seed}.jpg", encode(species_photo(2, seed=seed))) for seed in (11, 12, 13)]
    response = post_observation(served, photos, top_k="3")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_id"] == "fixture-a" and answer["safety_notice"] == SAFETY_NOTICE
    assert answer["combination"] == "mean_logits" and answer["elapsed_ms"] > 0
    assert [p["index"] for p in answer["photos"]] == [0, 1, 2]
    assert [p["filename"] for p in answer["photos"]] == ["11.jpg", "12.jpg", "13.jpg"]
    for item, (_, data) in zip(answer["photos"], photos, strict=True):  # each photo's answer is /predict's
        alone = single(served, data)
        mine = item["prediction"]
        assert (mine["verdict"], [p["label"] for p in mine["predictions"]]) == (
            alone["verdict"], [p["label"] for p in alone["predictions"][:3]])  # top_k=3 applies to each photo
        assert mine["ood_score"] == pytest.approx(alone["ood_score"], abs=1e-5)
    used = [data for item, (_, data) in zip(answer["photos"], photos, strict=True) if item["combined"]]
    assert answer["photos_combined"] == len(used) == 3  # drawn species photos are familiar to the model
    expected = openset.softmax(np.mean([reference.logits(data) for data in used], axis=0), reference.card.temperature)
    assert answer["ood_score"] == pytest.approx(np.mean([reference.ood(data) for data in used]), abs=1e-4)
    if answer["verdict"] in ("confident", "uncertain"):
        assert len(answer["predictions"]) == 3
        assert answer["predictions"][0]["label"] == CATALOG[int(np.argmax(expected))].name
        for prediction in answer["predictions"]:
            index = CATALOG.by_name(prediction["label"]).index
            assert prediction["probability"] == pytest.approx(float(expected[index]), abs=1e-4)
    else:
        assert answer["verdict"] == "unknown_species" and answer["ood_score"] > 1


def test_one_photo_is_answered_as_by_predict(served: Served) -> None:
    data = encode(species_photo(4, seed=21))
    answer = post_observation(served, [("a.jpg", data)]).json()
    alone = single(served, data)
    for field in ("verdict", "message", "predictions", "genus", "ood_score"):
        assert answer[field] == alone[field], field
    assert answer["photos_combined"] == 1


def test_photos_that_are_not_mushrooms_are_left_out(served: Served, reference: Reference) -> None:
    from PIL import Image

    mushroom = encode(species_photo(1, seed=31))
    # A flat grey frame: the gate refuses it by construction (no texture, no object), unlike a drawn sheet,
    # which a gate on general features may or may not pass.
    blank = encode(Image.new("RGB", (90, 90), (128, 128, 128)))
    assert single(served, blank)["verdict"] == "not_a_mushroom"
    answer = post_observation(served, [("m.jpg", mushroom), ("blank.jpg", blank)]).json()
    assert [p["combined"] for p in answer["photos"]] == [True, False]
    assert answer["photos"][1]["prediction"]["verdict"] == "not_a_mushroom"
    assert answer["photos_combined"] == 1
    alone = single(served, mushroom)
    assert (answer["verdict"], answer["predictions"]) == (alone["verdict"], alone["predictions"])
    assert answer["ood_score"] == pytest.approx(reference.ood(mushroom), abs=1e-4)


def test_an_observation_without_a_mushroom_photo_is_not_guessed(served: Served) -> None:
    from PIL import Image

    flat = [encode(Image.new("RGB", (90, 90), colour)) for colour in ((128, 128, 128), (20, 90, 30))]
    answer = post_observation(served, [("a.jpg", flat[0]), ("b.jpg", flat[1])]).json()
    assert answer["verdict"] == "not_a_mushroom" and answer["message"] == NO_MUSHROOM_PHOTO
    assert answer["predictions"] == [] and answer["photos_combined"] == 0 and answer["ood_score"] is None
    assert [p["combined"] for p in answer["photos"]] == [False, False]


def test_bad_observations_get_a_clear_4xx(served: Served) -> None:
    url = f"{served.url}/predict/observation"
    good = encode(species_photo(0, seed=41))
    too_many = [(f"{i}.jpg", good) for i in range(MAX_OBSERVATION_PHOTOS + 1)]
    response = post_observation(served, too_many)
    assert response.status_code == 413
    assert response.json()["detail"] == f"{TOO_MANY_PHOTOS} (at most {MAX_OBSERVATION_PHOTOS})"
    response = post_observation(served, [("a.jpg", good), ("notes.txt", b"not an image at all")])
    assert response.status_code == 415 and response.json()["detail"] == f"photo 1 ('notes.txt'): {NOT_AN_IMAGE}"
    response = post_observation(served, [("a.jpg", good), ("b.jpg", b"")])
    assert response.status_code == 400 and response.json()["detail"] == f"photo 1 ('b.jpg'): {EMPTY_UPLOAD}"
    response = httpx.post(url, files=[("files", ("a.jpg", good, "image/jpeg")), ("notes", (None, b"a text part"))])
    assert response.status_code == 400 and response.json()["detail"] == f"{NOT_A_FILE_PART}: 'notes'"
    response = httpx.post(url, files={"notes": (None, b"")}, data={})
    assert response.status_code == 400
    response = httpx.post(url, content=b"--x--\r\n", headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 400 and response.json()["detail"] == NO_PHOTOS
    response = httpx.post(url, content=good, headers={"content-type": "image/jpeg"})
    assert response.status_code == 415 and response.json()["detail"] == UNSUPPORTED_MEDIA


def test_the_client_asks_for_an_observation(served: Served) -> None:
    photos = [encode(species_photo(3, seed=seed)) for seed in (51, 52)]
    with InferenceClient(served.url) as inference:
        answer = inference.predict_observation(photos, top_k=2)
    assert answer.model_id == "fixture-a" and answer.safety_notice == SAFETY_NOTICE
    assert len(answer.photos) == 2 and answer.photos_combined == sum(p.combined for p in answer.photos)
    assert answer.photos[0].prediction.model_id == "fixture-a"
    if answer.verdict in ("confident", "uncertain"):
        assert len(answer.predictions) == 2
