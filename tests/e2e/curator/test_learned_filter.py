"""Stage 2 through the API: labels -> POST /filter/train -> a curation that uses the learned filter."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_labels_train_the_filter_and_curation_uses_it(curator, harvest_builder, small_web, manifests,
                                                      await_curation) -> None:
    assert curator.get("/filter").status_code == 404
    harvest = harvest_builder(web=small_web, images_per_domain=lambda i: 12)
    early = curator.post("/filter/train", json={"dataset": "fungi"})
    assert (early.status_code, early.json()["detail"]) == \
        (409, "no analysed images in this dataset yet: run a curation first")
    assert curator.post("/filter/train", json={"dataset": "nope"}).status_code == 404

    first = await_curation(curator, curator.post("/curations", json={
        "dataset": "fungi", "version": harvest.version, "rules": {"filter": "stage1"}}).json()["id"])
    assert first["report"]["filter"] == "stage1"
    assert first["progress"]["stage"] == "done"

    truth = harvest.irrelevant
    labels = [{"image_id": image_id, "label": "irrelevant" if bad else "relevant"}
              for image_id, bad in sorted(truth.items())[:40]]
    assert curator.post("/labels", json={"dataset": "fungi", "labels": labels}).status_code == 200
    trained = curator.post("/filter/train", json={"dataset": "fungi"})
    assert trained.status_code == 200, trained.text
    card = trained.json()
    assert card["human_labels"] == 40 and card["held_out"] > 0 and card["train_size"] > 30
    assert card["precision"] is not None and card["recall"] is not None
    assert curator.get("/filter").json() == card

    second = await_curation(curator, curator.post("/curations", json={
        "dataset": "fungi", "version": harvest.version}).json()["id"])
    assert second["report"]["filter"].startswith("learned")
    assert second["report"]["analysed"] == 0  # features came from the cache
    rows = manifests.read("fungi", second["output_version"]).to_pylist()
    flagged = {r["image_id"] for r in rows if r["excluded_reason"] == "irrelevant"}
    actually = {image_id for image_id, bad in truth.items() if bad}
    assert len(flagged & actually) >= 0.9 * len(actually)
    assert len(flagged & actually) >= 0.95 * len(flagged)
