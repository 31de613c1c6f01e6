"""Where a training job's images come from (spec ``input``): one object per image, or TFRecord shards.

Both give the task the same thing, ``dataset(split, training)``: batches of (float32 images, int32 labels), in
``plan.splits[split]`` order when not training, so ``TrainingRun.labels`` lines up with the embeddings.

- ``objects``: every image of the plan is fetched once into the worker's disk cache (``cache.ImageCache``,
  8 threads) and read from disk each epoch. No second copy in storage; the whole plan must fit the cache bound.
- ``shards``: the plan is packed into TFRecord shards on S3 unless the same packing exists (``shards.pack``),
  then streamed: shards are downloaded a few at a time into the same bounded cache and read by
  ``TFRecordDataset``. Why download-then-read rather than a Python generator over the S3 stream: the read then
  runs in C++ without the GIL (a generator parses every record in Python, under the lock the decode threads
  need), the memory held is a few shard files on disk rather than in RAM, and the second epoch and the next job
  read local disk (the cache keeps the most recently used shards up to its bound).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import tensorflow as tf

from services.trainer.cache import ImageCache
from services.trainer.core.config import TrainerSettings
from services.trainer.dataset import DatasetPlan
from services.trainer.input import build_dataset, build_shard_dataset
from services.trainer.multiworker import cluster_role
from services.trainer.shards import ShardIndex, pack, shard_order
from shared.storage import ObjectStore
from shared.training import TrainingJobSpec

logger = logging.getLogger(__name__)

Progress = Callable[..., None]


class InputSource(Protocol):
    def dataset(self, split: str, training: bool) -> tf.data.Dataset: ...


class ObjectInput:
    def __init__(self, spec: TrainingJobSpec, plan: DatasetPlan, cache: ImageCache, batch_size: int,
                 progress: Progress) -> None:
        self.spec, self.plan, self.batch_size = spec, plan, batch_size
        keys = plan.storage_keys()
        progress(stage="caching", cached=0, to_cache=len(keys))
        files = cache.fill(keys, progress=lambda done, total: progress(cached=done))
        self.paths = {split: [str(files[e.storage_key]) for e in examples] for split, examples in plan.splits.items()}

    def dataset(self, split: str, training: bool) -> tf.data.Dataset:
        return build_dataset(
            self.paths[split], [e.label for e in self.plan.splits[split]], self.spec.data.image_size,
            self.batch_size, augmentation=self.spec.augmentation if training else None, shuffle=training,
            seed=self.spec.seed)


class ShardInput:
    def __init__(self, spec: TrainingJobSpec, plan: DatasetPlan, store: ObjectStore, cache: ImageCache,
                 batch_size: int, settings: TrainerSettings, work_dir: Path, progress: Progress) -> None:
        self.spec, self.plan, self.cache, self.batch_size = spec, plan, cache, batch_size
        self.fetch_threads = settings.shard_fetch_threads
        data = spec.data
        assert data.manifest_version is not None
        progress(stage="packing", packed=0, to_pack=sum(len(e) for e in plan.splits.values()))
        role = cluster_role()  # in a multi-worker job only the chief packs; the others wait for its index
        self.index: ShardIndex = pack(plan, store, data.dataset, data.manifest_version, spec.seed,
                                      settings.shard_bytes, work_dir, threads=2 * settings.shard_fetch_threads,
                                      progress=lambda done, total: progress(packed=done),
                                      wait_s=None if role is None or role.is_chief else settings.shard_wait_s)
        self.shards = {split: {s.key: s for s in shards} for split, shards in self.index.splits.items()}
        for split in plan.splits:  # the order the shards hold, so labels line up with unshuffled reads
            plan.splits[split] = shard_order(plan, split, spec.seed)
            if len(plan.splits[split]) != self.index.count(split):
                raise RuntimeError(f"shards {self.index.prefix} hold {self.index.count(split)} {split} images, "
                                   f"the plan {len(plan.splits[split])}")

    def fetch(self, key: str) -> str:
        shard = next(shards[key] for shards in self.shards.values() if key in shards)
        return str(self.cache.fetch(key, size=shard.bytes, sha256=shard.sha256))

    def dataset(self, split: str, training: bool) -> tf.data.Dataset:
        return build_shard_dataset(
            list(self.shards[split]), self.fetch, self.spec.data.image_size, self.batch_size,
            augmentation=self.spec.augmentation if training else None, shuffle=training, seed=self.spec.seed,
            parallel_fetches=self.fetch_threads)


def open_input(spec: TrainingJobSpec, plan: DatasetPlan, store: ObjectStore, work_dir: Path, batch_size: int,
               settings: TrainerSettings, progress: Progress | None = None) -> ObjectInput | ShardInput:
    """The job's input source; in shards mode ``plan.splits`` is reordered to the shards' order."""
    report: Progress = progress or _ignore
    cache = ImageCache(store, work_dir, settings.cache_max_bytes)
    if spec.input == "shards":
        return ShardInput(spec, plan, store, cache, batch_size, settings, work_dir / "trainer" / "packing", report)
    return ObjectInput(spec, plan, cache, batch_size, report)


def _ignore(**_: Any) -> None:
    return None
