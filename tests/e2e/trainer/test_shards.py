"""Shards against the real S3 server: a job's input from streamed TFRecord shards is the per-object input."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from services.trainer.cache import ImageCache
from services.trainer.sources import ShardInput
from services.trainer.task import TrainingRun
from shared.storage import ObjectStore
from shared.training import TrainingJobSpec

from .conftest import small_spec

pytestmark = [pytest.mark.e2e, pytest.mark.ml]


def pairs(dataset: tf.data.Dataset) -> list[tuple[str, int]]:
    out = []
    for images, labels in dataset:
        for image, label in zip(images.numpy(), labels.numpy(), strict=True):
            out.append((hashlib.sha256(image.astype(np.uint8).tobytes()).hexdigest(), int(label)))
    return out


def test_shards_yield_the_same_images_and_labels_as_objects(
        trainer_store: ObjectStore, dataset_version: int, tmp_path: Path) -> None:
    objects_spec = TrainingJobSpec.model_validate(small_spec(dataset_version))
    shards_spec = objects_spec.with_overrides({"input": "shards"})
    by_objects = TrainingRun(objects_spec, "m-objects", trainer_store, tmp_path / "objects")
    by_shards = TrainingRun(shards_spec, "m-shards", trainer_store, tmp_path / "shards")
    object_sets, shard_sets = by_objects.build_inputs(), by_shards.build_inputs()
    assert isinstance(by_shards.input, ShardInput)
    prefix = by_shards.input.index.prefix
    assert prefix.startswith(f"shards/{objects_spec.data.dataset}/v{dataset_version}/")
    assert trainer_store.exists(prefix + "index.json")
    for split in ("validation", "test"):
        from_objects, from_shards = pairs(object_sets[split]), pairs(shard_sets[split])
        assert Counter(from_objects) == Counter(from_shards)
        assert [label for _, label in from_shards] == by_shards.labels(split).tolist()  # embeddings line up
    assert by_objects.input is not None
    unshuffled = pairs(by_shards.input.dataset("train", training=False))
    assert Counter(unshuffled) == Counter(pairs(by_objects.input.dataset("train", training=False)))
    assert [label for _, label in unshuffled] == by_shards.labels("train").tolist()
    labels = Counter(int(x) for _, batch in shard_sets["train"] for x in batch.numpy())
    assert labels == Counter(by_shards.labels("train").tolist())  # augmented and shuffled, same examples

    # a rescheduled worker on the same work dir: the pack is reused and the cached shards are valid
    again = TrainingRun(shards_spec, "m-shards-2", trainer_store, tmp_path / "shards")
    again.build_inputs()
    assert isinstance(again.input, ShardInput) and again.input.index.raw == by_shards.input.index.raw
    cache = ImageCache(trainer_store, tmp_path / "shards")
    assert set(cache.entries()) == {s.key for shards in again.input.index.splits.values() for s in shards}


def test_only_the_chief_packs_the_other_workers_wait_for_its_index(
        trainer_store: ObjectStore, dataset_version: int, tmp_path: Path) -> None:
    import threading

    from services.trainer.dataset import load_plan
    from services.trainer.shards import PackNotReady, ShardIndex, pack
    from shared.manifests import ManifestStore

    spec = TrainingJobSpec.model_validate(small_spec(dataset_version, seed=4242))  # a packing no other test made
    plan = load_plan(ManifestStore(trainer_store), spec.data)
    args = (plan, trainer_store, spec.data.dataset, dataset_version, spec.seed, 2**20)

    with pytest.raises(PackNotReady, match="the chief packs them"):  # no chief: a clear error, not a hang
        pack(*args, tmp_path / "alone", wait_s=0.5)

    waited: dict[str, object] = {}
    worker = threading.Thread(target=lambda: waited.setdefault("index", pack(*args, tmp_path / "w1", wait_s=120)))
    worker.start()  # a non-chief worker starts first and waits
    chief = pack(*args, tmp_path / "chief")
    worker.join(timeout=120)
    index = waited["index"]
    assert not worker.is_alive() and isinstance(index, ShardIndex) and index.raw == chief.raw
    written = [key for key in trainer_store.list(chief.prefix) if key.endswith(".tfrecord")]
    assert sorted(written) == sorted(s.key for shards in chief.splits.values() for s in shards)
    assert not (tmp_path / "w1").exists()  # the waiting worker wrote nothing, not even scratch files
