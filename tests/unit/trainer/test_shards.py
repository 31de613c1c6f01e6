"""Packing a plan into TFRecord shards: record round trip, shard sizes, seeded order, the trainer's own split."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from services.trainer.dataset import SPLITS, Example, plan_dataset
from services.trainer.input import build_shard_dataset
from services.trainer.shards import (
    cut_shards,
    iter_records,
    pack,
    parse_record,
    read_index,
    serialize_record,
    shard_order,
)
from shared.manifests import RECORD_SCHEMA
from shared.storage import ObjectStore
from shared.training import DataConfig

pytestmark = pytest.mark.unit


def jpeg(value: int, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def manifest(store: ObjectStore, per_class: int = 12, classes: int = 3) -> pa.Table:
    rows: list[dict[str, Any]] = []
    for class_index in range(classes):
        species = f"Amanita sp{class_index}"
        for index in range(per_class):
            key = f"images/{class_index}-{index}.jpg"
            data = jpeg(40 * class_index + index)
            store.put_bytes(key, data)
            rows.append({"image_id": f"{class_index}-{index}", "observation_id": f"{class_index}-obs-{index // 2}",
                         "source": "csv", "species": species, "genus": "Amanita", "family": "Amanitaceae",
                         "url": "http://x.test/a.jpg", "domain": "x.test", "status": "ok", "storage_key": key,
                         "bytes": len(data)})
    return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)


def config() -> DataConfig:
    return DataConfig.model_validate({"dataset": "fungi", "manifest_version": 3, "min_images_per_class": 3})


def test_a_record_round_trips() -> None:
    record = parse_record(serialize_record(b"\xff\xd8jpeg", 7, "img-1", "obs-1"))
    assert record["image"].numpy() == b"\xff\xd8jpeg"
    assert int(record["label"]) == 7
    assert record["image_id"].numpy() == b"img-1" and record["observation_id"].numpy() == b"obs-1"


def test_shards_are_cut_at_about_the_target_size() -> None:
    examples = [Example(f"i{n}", f"o{n}", f"k{n}", 0, size=1000 + (n % 7) * 100) for n in range(1000)]
    groups = cut_shards(examples, shard_bytes=100_000, default_size=1)
    total = sum(e.size or 0 for e in examples)
    assert len(groups) == -(-total // 100_000)
    assert [e for group in groups for e in group] == examples  # consecutive, nothing lost or repeated
    sizes = [sum(e.size or 0 for e in group) for group in groups]
    assert max(sizes) <= 100_000 * 1.05 and min(sizes) >= total / len(groups) * 0.9
    assert cut_shards(examples[:3], shard_bytes=100_000, default_size=1) == [examples[:3]]
    unknown = [Example(f"i{n}", f"o{n}", f"k{n}", 0) for n in range(10)]
    assert len(cut_shards(unknown, shard_bytes=250, default_size=100)) == 4


def test_the_order_is_a_seeded_shuffle(dir_store: ObjectStore) -> None:
    plan = plan_dataset(manifest(dir_store), config())
    first = [e.image_id for e in shard_order(plan, "train", seed=1)]
    assert first == [e.image_id for e in shard_order(plan, "train", seed=1)]
    assert first != [e.image_id for e in shard_order(plan, "train", seed=2)]
    assert sorted(first) == sorted(e.image_id for e in plan.splits["train"])
    assert first != sorted(first)


def test_pack_writes_the_trainers_split_and_is_reused(dir_store: ObjectStore, dir_bucket: Any, tmp_path: Path) -> None:
    plan = plan_dataset(manifest(dir_store), config())
    target = 4 * max(e.size or 0 for examples in plan.splits.values() for e in examples)
    index = pack(plan, dir_store, "fungi", 3, seed=5, shard_bytes=target, work_dir=tmp_path / "p")
    assert index.prefix.startswith("shards/fungi/v3/")
    assert len(index.splits["train"]) > 1
    names = [shard.key.rsplit("/", 1)[1] for shard in index.splits["train"]]
    total = len(names)
    assert names == [f"train-{n:05d}-of-{total:05d}.tfrecord" for n in range(total)]
    assert index.raw["label_map"] == {label.name: label.index for label in plan.classes}
    for split in SPLITS:
        records = [r for shard in index.splits[split] for r in iter_records(dir_bucket.root / shard.key)]
        assert [r["image_id"] for r in records] == [e.image_id for e in shard_order(plan, split, 5)]
        expected = {e.image_id: e for e in plan.splits[split]}
        assert {r["image_id"] for r in records} == set(expected)  # the very split plan_dataset made
        for record in records:
            example = expected[record["image_id"]]
            assert record["label"] == example.label and record["observation_id"] == example.observation_id
            assert record["image"] == dir_store.get_bytes(example.storage_key)
        assert index.raw["splits"][split]["count"] == len(records)
    assert read_index(dir_store, index.prefix) is not None
    before = len(dir_bucket.gets)
    again = pack(plan, dir_store, "fungi", 3, seed=5, shard_bytes=target, work_dir=tmp_path / "p")
    assert again.splits == index.splits and len(dir_bucket.gets) == before + 1  # only the index was read
    other = pack(plan, dir_store, "fungi", 3, seed=6, shard_bytes=10**6, work_dir=tmp_path / "p")
    assert other.prefix != index.prefix


def test_shards_stream_as_the_same_batches(dir_store: ObjectStore, dir_bucket: Any, tmp_path: Path) -> None:
    plan = plan_dataset(manifest(dir_store), config())
    index = pack(plan, dir_store, "fungi", 3, seed=0, shard_bytes=3000, work_dir=tmp_path / "p")
    keys = [shard.key for shard in index.splits["train"]]
    ordered = build_shard_dataset(keys, lambda key: str(dir_bucket.root / key), 8, 4)
    labels = np.concatenate([batch[1].numpy() for batch in ordered])
    assert labels.tolist() == [e.label for e in shard_order(plan, "train", 0)]
    shuffled = build_shard_dataset(keys, lambda key: str(dir_bucket.root / key), 8, 4, shuffle=True, cycle_length=2)
    images, labels = zip(*[(b[0].numpy(), b[1].numpy()) for b in shuffled], strict=True)
    assert Counter(np.concatenate(labels).tolist()) == Counter(e.label for e in plan.splits["train"])
    assert np.concatenate(images).shape[1:] == (8, 8, 3)
