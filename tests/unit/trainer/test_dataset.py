"""Dataset planning: usable rows only, class choice, caps, and splits grouped by observation and stratified."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from services.trainer.dataset import DatasetError, plan_dataset
from shared.manifests import RECORD_SCHEMA
from shared.training import DataConfig

pytestmark = pytest.mark.unit


def table(per_class: dict[str, int], photos: int = 3, extra: list[dict[str, Any]] | None = None) -> pa.Table:
    rows: list[dict[str, Any]] = []
    for species, count in per_class.items():
        genus = species.split()[0]
        for index in range(count):
            rows.append({"image_id": f"{species}-{index}", "observation_id": f"{species}-obs-{index // photos}",
                         "source": "csv", "species": species, "genus": genus, "family": f"{genus}aceae",
                         "url": "http://x.test/a.jpg", "domain": "x.test", "status": "ok",
                         "storage_key": f"images/{species}-{index}.jpg"})
    return pa.Table.from_pylist(rows + (extra or []), schema=RECORD_SCHEMA)


def config(**changes: Any) -> DataConfig:
    return DataConfig.model_validate({"dataset": "fungi", "min_images_per_class": 3, **changes})


CLASSES = {"Amanita muscaria": 60, "Amanita phalloides": 45, "Boletus edulis": 30, "Russula emetica": 5}


def test_observations_never_straddle_splits_and_every_class_is_in_every_split() -> None:
    plan = plan_dataset(table(CLASSES), config(min_images_per_class=10))
    assert plan.class_names == ["Amanita muscaria", "Amanita phalloides", "Boletus edulis"]  # Russula: too few
    owner: dict[str, str] = {}
    for split, examples in plan.splits.items():
        for example in examples:
            assert owner.setdefault(example.observation_id, split) == split
    counts = plan.counts()
    assert all(counts[split][name] > 0 for split in counts for name in plan.class_names)
    assert sum(sum(per.values()) for per in counts.values()) == 135
    assert counts["train"]["Amanita muscaria"] > counts["test"]["Amanita muscaria"]


def test_splits_are_deterministic_and_the_seed_changes_them() -> None:
    first, again = plan_dataset(table(CLASSES), config()), plan_dataset(table(CLASSES), config())
    assert first.splits == again.splits and first.test_split_hash() == again.test_split_hash()
    other = plan_dataset(table(CLASSES), config(split_seed=1))
    assert other.test_split_hash() != first.test_split_hash()


def test_only_harvested_unexcluded_labelled_rows_are_used() -> None:
    base = table({"Amanita muscaria": 12, "Boletus edulis": 12}).to_pylist()
    bad = [
        {**base[0], "image_id": "failed", "status": "failed", "storage_key": None, "observation_id": "x1"},
        {**base[0], "image_id": "pending", "status": "pending", "storage_key": None, "observation_id": "x2"},
        {**base[0], "image_id": "excluded", "excluded_reason": "irrelevant", "observation_id": "x3"},
        {**base[0], "image_id": "unlabelled", "species": None, "observation_id": "x4"},
    ]
    plan = plan_dataset(table({"Amanita muscaria": 12, "Boletus edulis": 12}, extra=bad), config())
    used = {e.image_id for examples in plan.splits.values() for e in examples}
    assert len(used) == 24 and not used & {"failed", "pending", "excluded", "unlabelled"}


def test_explicit_classes_top_n_and_the_per_class_cap() -> None:
    plan = plan_dataset(table(CLASSES), config(classes=["Boletus edulis", "Amanita muscaria"], images_per_class=12))
    assert plan.class_names == ["Boletus edulis", "Amanita muscaria"]
    assert [label.index for label in plan.classes] == [0, 1]
    assert {name: sum(plan.counts()[s][name] for s in plan.splits) for name in plan.class_names} == {
        "Boletus edulis": 12, "Amanita muscaria": 12}
    top = plan_dataset(table(CLASSES), config(top_n=2))
    assert top.class_names == ["Amanita muscaria", "Amanita phalloides"]


def test_genus_level_labels_carry_the_hierarchy() -> None:
    plan = plan_dataset(table(CLASSES), config(taxon_level="genus"))
    assert plan.class_names == ["Amanita", "Boletus"]  # Russula: 2 observations cannot fill 3 splits
    amanita = plan.classes[0]
    assert amanita.genus == "Amanita" and amanita.family == "Amanitaaceae" and amanita.species is None
    assert plan.counts()["train"]["Amanita"] > plan.counts()["train"]["Boletus"]


@pytest.mark.parametrize(("data", "changes", "message"), [
    ({"Amanita muscaria": 30, "Boletus edulis": 6}, {"classes": ["Amanita muscaria", "Boletus edulis"]},
     "class 'Boletus edulis' has 2 observations"),
    ({"Amanita muscaria": 30}, {}, "fewer than 2 classes"),
    ({"Amanita muscaria": 30, "Boletus edulis": 30}, {"classes": ["Amanita muscaria", "Suillus luteus"]},
     "classes not in the manifest"),
    ({"Amanita muscaria": 30, "Boletus edulis": 4}, {"classes": ["Amanita muscaria", "Boletus edulis"],
                                                      "min_images_per_class": 5}, "fewer than 5 usable images"),
    ({}, {}, "no usable images"),
])
def test_datasets_that_cannot_be_split_are_refused(data: dict[str, int], changes: dict[str, Any],
                                                   message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        plan_dataset(table(data), config(**changes))
