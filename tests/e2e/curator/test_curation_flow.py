"""The whole curator against the real stack: S3 server, Redis, uvicorn, an RQ worker process."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from shared.manifests import ManifestStore
from shared.schemas import INVALID_DATASET

pytestmark = pytest.mark.e2e


def test_twenty_domains_flag_exactly_the_herbarium_ones(curator, harvest_builder, web20, manifests: ManifestStore,
                                                        await_curation) -> None:
    harvest = harvest_builder(web=web20, images_per_domain=lambda i: 36 if i >= 17 else 12 + (i % 3) * 4,
                              failed_every=23, duplicate_pairs=4)
    # The duplicates' originals are drawn mushrooms, which the ImageNet gate may or may not call relevant (it is
    # not fitted to drawn pictures); irrelevant comes before duplicate, so a person labels them relevant here and
    # duplicate detection is tested on its own.
    pinned = [{"image_id": image_id, "label": "relevant"} for pair in harvest.duplicates.items() for image_id in pair]
    assert curator.post("/labels", json={"dataset": "fungi", "labels": pinned}).status_code == 200
    started = curator.post("/curations", json={"dataset": "fungi", "version": harvest.version})
    assert started.status_code == 202, started.text
    done = await_curation(curator, started.json()["id"])
    assert done["state"] == "completed", done["error"]
    report = done["report"]
    curated = manifests.read("fungi", done["output_version"])
    info = manifests.info("fungi", done["output_version"])
    assert (info.operation.value, info.parent) == ("curation", harvest.version)
    assert curated.num_rows == harvest.table.num_rows  # rows are never deleted
    assert report["excluded"]["not_harvested"] == sum(1 for s in harvest.table.column("status").to_pylist()
                                                      if s == "failed")
    rows = {r["image_id"]: r for r in curated.to_pylist()}
    for copy, original in harvest.duplicates.items():
        assert rows[copy]["excluded_reason"] == "duplicate", rows[copy]
        assert rows[copy]["duplicate_of"] == original
    assert report["cross_observation_duplicates"] == len(harvest.duplicates)
    assert sorted(map(tuple, report["cross_observation_examples"])) == sorted(harvest.duplicates.items())

    domains = curator.get("/domains", params={"dataset": "fungi", "version": done["output_version"]})
    assert domains.status_code == 200, domains.text
    flagged = {d["domain"] for d in domains.json()["domains"] if d["recommendation"] == "blacklist"}
    assert flagged == set(harvest.herbarium), [(d["domain"], d["why"]) for d in domains.json()["domains"]]
    by_name = {d["domain"]: d for d in domains.json()["domains"]}
    some = by_name[harvest.herbarium[0]]
    assert some["wilson_low"] > 0.5 and some["scored"] >= 20
    assert sum(d["duplicates"] for d in by_name.values()) == len(harvest.duplicates)
    assert any(d["failure_rate"] for d in by_name.values())

    # The harvest version itself: scores come from the analysis cache, so the same verdict.
    again = curator.get("/domains", params={"dataset": "fungi", "version": harvest.version}).json()
    assert {d["domain"] for d in again["domains"] if d["recommendation"] == "blacklist"} == set(harvest.herbarium)


def test_review_sample_labels_and_reversible_blacklist(curator, harvest_builder, small_web, manifests,
                                                       await_curation) -> None:
    harvest = harvest_builder(web=small_web, images_per_domain=lambda i: 8)
    domain = small_web.domains[0].name

    sample = curator.get(f"/domains/{domain}/sample", params={"dataset": "fungi", "n": 5, "seed": 7})
    assert sample.status_code == 200, sample.text
    body = sample.json()
    assert len(body["images"]) == 5 and body["seed"] == 7 and body["available"] == 8
    same = curator.get(f"/domains/{domain}/sample", params={"dataset": "fungi", "n": 5, "seed": 7}).json()
    assert [i["image_id"] for i in same["images"]] == [i["image_id"] for i in body["images"]]
    first = body["images"][0]
    assert first["image_url"].startswith("http") and "X-Amz-Signature" in first["image_url"]

    png = curator.get(f"/domains/{domain}/sample", params={"dataset": "fungi", "n": 5, "seed": 7, "format": "png"})
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size[0] > 0
    page = curator.get(f"/domains/{domain}/sample", params={"dataset": "fungi", "seed": 7, "format": "html"})
    assert page.headers["content-type"].startswith("text/html")
    assert first["image_id"] in page.text and 'fetch("/labels"' in page.text

    # A person marks one photo irrelevant: the next curation excludes it, whatever the filter says.
    labelled = curator.post("/labels", json={"dataset": "fungi",
                                             "labels": [{"image_id": first["image_id"], "label": "irrelevant"}]})
    assert labelled.status_code == 200, labelled.text
    assert labelled.json() == {"stored": 1, "total_labelled": 1}
    listed = curator.get("/labels", params={"dataset": "fungi"}).json()
    assert [(item["image_id"], item["label"], item["domain"]) for item in listed] == \
        [(first["image_id"], "irrelevant", domain)]

    other = small_web.domains[1].name
    put = curator.put(f"/blacklist/{other}", json={"reason": "test: too many envelopes", "actor": "alice"})
    assert put.status_code == 201, put.text
    run1 = await_curation(curator, curator.post("/curations", json={"dataset": "fungi",
                                                                    "version": harvest.version}).json()["id"])
    rows1 = {r["image_id"]: r for r in manifests.read("fungi", run1["output_version"]).to_pylist()}
    assert rows1[first["image_id"]]["excluded_reason"] == "irrelevant"
    assert run1["report"]["by_domain"][other]["blacklisted"] == 8
    assert {r["excluded_reason"] for r in rows1.values() if r["domain"] == other} == {"blacklisted"}

    removed = curator.delete(f"/blacklist/{other}", params={"actor": "bob", "reason": "false alarm"})
    assert removed.status_code == 200
    run2 = await_curation(curator, curator.post("/curations", json={"dataset": "fungi",
                                                                    "version": harvest.version}).json()["id"])
    assert run2["report"]["excluded"]["blacklisted"] == 0
    assert run2["report"]["reused"] == run1["report"]["analysed"]  # no image fetched twice
    rows2 = {r["image_id"]: r for r in manifests.read("fungi", run2["output_version"]).to_pylist()}
    back = [r for r in rows2.values() if r["domain"] == other]
    # Back to the gate's judgement: included exactly where the (same, cached) score says relevant.
    assert len(back) == 8 and all(r["excluded_reason"] in (None, "irrelevant") for r in back)
    assert [r["excluded_reason"] is None for r in back] == [r["irrelevant_score"] <= 0.5 for r in back]
    history = curator.get("/blacklist/history").json()
    assert [(h["action"], h["entry"], h["actor"]) for h in history[-2:]] == \
        [("add", other, "alice"), ("remove", other, "bob")]


def test_bad_input(curator, harvest_builder, small_web) -> None:
    harvest_builder(web=small_web, images_per_domain=lambda i: 2)
    cases = [
        (curator.post("/curations", json={"dataset": "nope"}), 404, "dataset not found"),
        (curator.post("/curations", json={"dataset": "fungi", "version": 99}), 404, "manifest version not found"),
        (curator.post("/curations", json={"dataset": "../etc"}), 422, INVALID_DATASET),
        (curator.get("/domains", params={"dataset": "UPPER"}), 422, INVALID_DATASET),
        (curator.get("/domains", params={"dataset": "nope"}), 404, "dataset not found"),
        (curator.get("/domains", params={"dataset": "fungi", "version": 42}), 404, "manifest version not found"),
        (curator.get("/domains/nowhere.test/sample", params={"dataset": "fungi"}), 404,
         "no harvested images of this domain in the manifest version"),
        (curator.post("/labels", json={"dataset": "fungi", "labels": [{"image_id": "not-an-image",
                                                                         "label": "irrelevant"}]}), 404,
         "label for an unknown image_id: not-an-image"),
        (curator.get("/curations/0123456789abcdef"), 404, "curation not found"),
        (curator.get("/curations/..%2Fblacklist"), 404, None),
    ]
    for response, code, detail in cases:
        assert response.status_code == code, response.text
        if detail == INVALID_DATASET:  # a field error, in FastAPI's list
            assert INVALID_DATASET in response.json()["detail"][0]["msg"], response.json()
        elif detail:
            assert response.json()["detail"].startswith(detail), response.json()
    assert curator.post("/labels", json={"dataset": "fungi", "labels": [{"image_id": "x", "label": "maybe"}]}) \
        .status_code == 422
    assert curator.post("/curations", json={"dataset": "fungi", "rules": {"irrelevant_threshold": 2}}) \
        .status_code == 422
    assert curator.post("/curations", headers={"Authorization": "Bearer wrong"},
                        json={"dataset": "fungi"}).status_code == 403
