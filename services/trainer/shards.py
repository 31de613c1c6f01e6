"""Training data as TFRecord shards on S3: packed once per (manifest version, split plan), streamed by many jobs.

The trainer packs, right before training, because only the trainer knows the split (``dataset.plan_dataset``
depends on the spec's classes, caps, fractions and seed); packing elsewhere would be a second split
implementation that could disagree. Shards of one plan live under
``shards/<dataset>/v<version>/<plan fingerprint>/`` as ``<split>-00003-of-00017.tfrecord`` with an
``index.json`` (shards, counts, sizes, SHA-256, the label map) written last: a prefix without its index is an
unfinished pack and is packed again. Every later job whose spec gives the same plan reuses the shards.

Each record is a ``tf.train.Example``: ``image`` (the stored bytes, already normalised JPEG), ``label`` (index
into the plan's classes), ``image_id``, ``observation_id``. Inside a split, records are in a seeded shuffle of
the plan (:func:`shard_order`), so a shard holds a mix of classes and a shuffle buffer of a few shards' worth
mixes well; shards are cut at about ``shard_bytes``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tensorflow as tf

from services.trainer.cache import size_and_sha256
from services.trainer.dataset import SPLITS, DatasetPlan, Example
from shared.storage import ObjectNotFound, ObjectStore

logger = logging.getLogger(__name__)

FORMAT = 1
INDEX_NAME = "index.json"
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "image_id": tf.io.FixedLenFeature([], tf.string),
    "observation_id": tf.io.FixedLenFeature([], tf.string),
}


@dataclass(frozen=True)
class ShardFile:
    key: str
    count: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class ShardIndex:
    prefix: str
    splits: dict[str, list[ShardFile]]
    raw: dict[str, Any]

    def count(self, split: str) -> int:
        return sum(shard.count for shard in self.splits[split])

    @classmethod
    def from_json(cls, prefix: str, raw: dict[str, Any]) -> ShardIndex:
        splits = {split: [ShardFile(**shard) for shard in entry["shards"]] for split, entry in raw["splits"].items()}
        return cls(prefix=prefix, splits=splits, raw=raw)


def plan_fingerprint(plan: DatasetPlan, seed: int, shard_bytes: int) -> str:
    """Names one packing: the plan's images, labels and classes, the shuffle seed and the shard size."""
    digest = hashlib.sha256(f"format {FORMAT}\nseed {seed}\nshard_bytes {shard_bytes}\n".encode())
    for label in plan.classes:
        digest.update(f"class\t{label.index}\t{label.name}\n".encode())
    for split in SPLITS:
        for example in sorted(plan.splits[split], key=lambda e: e.image_id):
            digest.update(f"{split}\t{example.image_id}\t{example.storage_key}\t{example.label}\n".encode())
    return digest.hexdigest()[:16]


def shard_prefix(dataset: str, version: int, fingerprint: str) -> str:
    return f"shards/{dataset}/v{version}/{fingerprint}/"


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.tfrecord"


def shard_order(plan: DatasetPlan, split: str, seed: int) -> list[Example]:
    """The split's examples in the order the shards hold them (a seeded shuffle, the same on every machine)."""
    examples = sorted(plan.splits[split], key=lambda e: e.image_id)
    random.Random(f"{seed}:{split}").shuffle(examples)
    return examples


def cut_shards(examples: list[Example], shard_bytes: int, default_size: int) -> list[list[Example]]:
    """Consecutive groups of about ``shard_bytes`` each (sizes from the manifest; ``default_size`` when unknown)."""
    if not examples:
        return []
    sizes = [example.size if example.size else default_size for example in examples]
    total = max(1, math.ceil(sum(sizes) / shard_bytes))
    target = sum(sizes) / total
    groups: list[list[Example]] = [[]]
    filled = 0.0
    for example, size in zip(examples, sizes, strict=True):
        if groups[-1] and filled + size / 2 > target * len(groups) and len(groups) < total:
            groups.append([])
        groups[-1].append(example)
        filled += size
    return groups


def serialize_record(image: bytes, label: int, image_id: str, observation_id: str) -> bytes:
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "image_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_id.encode()])),
        "observation_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[observation_id.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_record(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    return tf.io.parse_single_example(serialized, FEATURES)


def read_index(store: ObjectStore, prefix: str) -> ShardIndex | None:
    try:
        raw = store.get_json(prefix + INDEX_NAME)
    except ObjectNotFound:
        return None
    if raw.get("format") != FORMAT:
        return None
    return ShardIndex.from_json(prefix, raw)


class PackNotReady(TimeoutError):
    """The chief did not finish packing within the wait."""


def wait_for_index(store: ObjectStore, prefix: str, wait_s: float, poll_s: float = 2.0) -> ShardIndex:
    """The index at ``prefix`` once it exists (it is written last, so the shards are complete by then)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = read_index(store, prefix)
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            raise PackNotReady(f"shards {prefix}: no index after {wait_s:.0f} s; the chief packs them, is it running?"
                               " (SPOREPRINT_TRAINER_SHARD_WAIT_S)")
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


def pack(
    plan: DatasetPlan,
    store: ObjectStore,
    dataset: str,
    version: int,
    seed: int,
    shard_bytes: int,
    work_dir: Path,
    threads: int = 8,
    progress: Callable[[int, int], None] | None = None,
    wait_s: float | None = None,
) -> ShardIndex:
    """The plan's shards on S3: reused when this exact packing exists, else written (image bytes read once).

    With ``wait_s`` this process does not pack: it waits up to ``wait_s`` seconds for another one (a multi-worker
    job's chief) to write the index, so that N workers do not pack the same shards N times."""
    prefix = shard_prefix(dataset, version, plan_fingerprint(plan, seed, shard_bytes))
    existing = read_index(store, prefix) if wait_s is None else wait_for_index(store, prefix, wait_s)
    if existing is not None:
        logger.info("shards %s: reusing %s", prefix, {split: existing.count(split) for split in existing.splits})
        return existing
    known = [e.size for examples in plan.splits.values() for e in examples if e.size]
    default_size = int(sum(known) / len(known)) if known else 100_000
    total = sum(len(examples) for examples in plan.splits.values())
    done = 0
    splits: dict[str, list[ShardFile]] = {}
    work_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for split in SPLITS:
            groups = cut_shards(shard_order(plan, split, seed), shard_bytes, default_size)
            splits[split] = []
            for index, group in enumerate(groups):
                key = prefix + shard_name(split, index, len(groups))
                splits[split].append(_write_shard(store, key, group, pool, work_dir))
                done += len(group)
                if progress:
                    progress(done, total)
    raw = {
        "format": FORMAT, "dataset": dataset, "manifest_version": version, "seed": seed, "shard_bytes": shard_bytes,
        "created_at": datetime.now(UTC).isoformat(),
        "classes": [label.model_dump(mode="json") for label in plan.classes],
        "label_map": {label.name: label.index for label in plan.classes},
        "splits": {split: {"count": sum(s.count for s in shards), "shards": [vars(s) for s in shards]}
                   for split, shards in splits.items()},
    }
    store.put_json(prefix + INDEX_NAME, raw)  # last: the index is the commit mark of a finished pack
    logger.info("shards %s: packed %s", prefix, {split: len(shards) for split, shards in splits.items()})
    return ShardIndex.from_json(prefix, json.loads(json.dumps(raw)))


def _write_shard(store: ObjectStore, key: str, group: list[Example], pool: ThreadPoolExecutor,
                 work_dir: Path) -> ShardFile:
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="pack-") as tmp:
        path = Path(tmp) / "shard.tfrecord"
        with tf.io.TFRecordWriter(str(path)) as writer:
            # pool.map keeps order and holds at most one shard of image bytes
            for example, data in zip(group, pool.map(lambda e: store.get_bytes(e.storage_key), group), strict=True):
                writer.write(serialize_record(data, example.label, example.image_id, example.observation_id))
        size, digest = size_and_sha256(path)
        store.put_file(key, path, "application/x-tfrecord")
    return ShardFile(key=key, count=len(group), bytes=size, sha256=digest)


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """Decoded records of a local shard file (tests and tools; training reads with tf.data)."""
    for serialized in tf.data.TFRecordDataset(str(path)):
        record = parse_record(serialized)
        yield {"image": record["image"].numpy(), "label": int(record["label"]),
               "image_id": record["image_id"].numpy().decode(),
               "observation_id": record["observation_id"].numpy().decode()}


def main(argv: list[str] | None = None) -> None:
    """``python -m services.trainer.shards SPEC.json``: pack a job's shards ahead of training (what a job with
    ``input: shards`` would do first); prints the index key. The spec's manifest version must be pinned."""
    import argparse
    import sys

    from services.trainer.core.config import get_trainer_settings
    from services.trainer.dataset import load_plan
    from shared.manifests import ManifestStore
    from shared.settings import get_settings
    from shared.training import TrainingJobSpec

    parser = argparse.ArgumentParser(description="pack a training spec's split into TFRecord shards on S3")
    parser.add_argument("spec", type=Path, help="a TrainingJobSpec JSON file with data.manifest_version set")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    spec = TrainingJobSpec.model_validate_json(args.spec.read_text())
    settings, trainer = get_settings(), get_trainer_settings()
    store = ObjectStore.from_settings(settings)
    plan = load_plan(ManifestStore(store), spec.data)
    assert spec.data.manifest_version is not None  # load_plan refuses an unpinned spec
    index = pack(plan, store, spec.data.dataset, spec.data.manifest_version, spec.seed, trainer.shard_bytes,
                 Path(settings.work_dir) / "trainer" / "packing", threads=2 * trainer.shard_fetch_threads)
    sys.stdout.write(f"{index.prefix}{INDEX_NAME}\n")


if __name__ == "__main__":
    main()
