"""The relevance probe through the API: labels -> POST /filter/train -> a curation judged by the gate with it.

The fixture web's pictures are drawn, so nothing here asserts how well the gate or the probe judge them
(that is measured on real photos: tests/unit/curator/test_relevance_real.py); this is the plumbing: the probe
is fitted on human labels alone, stored where /predict reads it, named by the curation that used it, and the
curation reuses the cached readings instead of fetching images again.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.ml]


def test_labels_train_the_probe_and_curation_uses_it(curator, harvest_builder, small_web, manifests, store,
                                                     await_curation) -> None:
    status = curator.get("/filter")
    assert status.status_code == 200 and status.json()["mode"] == "zero-shot" and status.json()["probe"] is None
    harvest = harvest_builder(web=small_web, images_per_domain=lambda i: 12)
    early = curator.post("/filter/train", json={"dataset": "fungi"})
    assert (early.status_code, early.json()["detail"]) == \
        (409, "no analysed images in this dataset yet: run a curation first")
    assert curator.post("/filter/train", json={"dataset": "nope"}).status_code == 404

    first = await_curation(curator, curator.post("/curations", json={
        "dataset": "fungi", "version": harvest.version, "rules": {"filter": "statistics"}}).json()["id"])
    assert first["state"] == "completed", first["error"]
    assert first["report"]["filter"].startswith("statistics")
    assert first["progress"]["stage"] == "done"
    zero_shot = await_curation(curator, curator.post("/curations", json={
        "dataset": "fungi", "version": harvest.version}).json()["id"])
    assert zero_shot["report"]["filter"].startswith("relevance gate efficientnet_lite0-")
    assert zero_shot["report"]["filter"].endswith("+zero-shot")
    assert zero_shot["report"]["analysed"] == 0  # the first curation's readings came from the cache

    truth = harvest.irrelevant
    few = [{"image_id": image_id, "label": "irrelevant" if bad else "relevant"}
           for image_id, bad in sorted(truth.items())[:3]]
    assert curator.post("/labels", json={"dataset": "fungi", "labels": few}).status_code == 200
    refused = curator.post("/filter/train", json={"dataset": "fungi"})
    assert refused.status_code == 409 and refused.json()["detail"].startswith("need at least 5 human labels")

    labels = [{"image_id": image_id, "label": "irrelevant" if bad else "relevant"}
              for image_id, bad in sorted(truth.items())[:40]]
    assert curator.post("/labels", json={"dataset": "fungi", "labels": labels}).status_code == 200
    trained = curator.post("/filter/train", json={"dataset": "fungi"})
    assert trained.status_code == 200, trained.text
    probe = trained.json()
    assert probe["human_labels"] == 40 and probe["held_out"] > 0
    assert probe["irrelevant_labels"] == sum(1 for item in labels if item["label"] == "irrelevant")
    assert probe["pretrained"].startswith("efficientnet_lite0-") and len(probe["weights"]) == 1280 + 14
    assert probe["held_out_precision"] is not None and probe["held_out_zero_shot_precision"] is not None
    shown = curator.get("/filter").json()
    assert (shown["mode"], shown["probe"]) == ("probe", probe)
    assert store.get_json("curation/relevance/probe.json") == probe  # where /predict reads it

    second = await_curation(curator, curator.post("/curations", json={
        "dataset": "fungi", "version": harvest.version}).json()["id"])
    assert second["state"] == "completed", second["error"]
    assert second["report"]["filter"] == f"relevance gate {shown['gate']}"
    assert second["report"]["analysed"] == 0  # readings came from the cache
    rows = {r["image_id"]: r for r in manifests.read("fungi", second["output_version"]).to_pylist()}
    for item in labels:  # a person's label decides, both ways
        reason = rows[item["image_id"]]["excluded_reason"]
        assert (reason == "irrelevant") == (item["label"] == "irrelevant") or reason in ("duplicate", "too_small")
    assert all(r["irrelevant_score"] is not None for r in rows.values() if r["status"] == "ok")
