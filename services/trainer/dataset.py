"""From a manifest version to a training plan: the classes, and deterministic train/validation/test splits.

Only usable rows take part: harvested (status ok, stored), not excluded by curation, labelled at the job's
taxon level. Splits are grouped by ``observation_id`` (photos of one observation never straddle splits) and
stratified by class; the order inside a class comes from a seeded hash, so the same manifest version and
spec always give the same splits, on any machine. No TensorFlow here: the API plans too, to refuse a job
whose dataset is too small before it reaches the queue.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from shared.manifests import ManifestStore
from shared.registry import ClassLabel
from shared.schemas import HarvestStatus
from shared.training import DataConfig

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
COLUMNS = ["image_id", "observation_id", "species", "genus", "family", "status", "storage_key", "excluded_reason",
           "bytes"]


class DatasetError(ValueError):
    """The manifest cannot give this job a usable dataset (too small, unknown classes...)."""


@dataclass(frozen=True)
class Example:
    image_id: str
    observation_id: str
    storage_key: str
    label: int
    size: int | None = None  # stored bytes (the manifest's ``bytes``), for sizing shards


@dataclass
class DatasetPlan:
    classes: list[ClassLabel]
    splits: dict[str, list[Example]] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return [label.name for label in self.classes]

    def counts(self) -> dict[str, dict[str, int]]:
        """split -> class name -> images."""
        out: dict[str, dict[str, int]] = {}
        for split, examples in self.splits.items():
            counter = Counter(example.label for example in examples)
            out[split] = {label.name: counter.get(label.index, 0) for label in self.classes}
        return out

    def test_split_hash(self) -> str:
        """Identifies the test split (its images and labels): models are comparable only on the same one."""
        digest = hashlib.sha256()
        for example in sorted(self.splits["test"], key=lambda e: e.image_id):
            digest.update(f"{example.image_id}\t{self.classes[example.label].name}\n".encode())
        return digest.hexdigest()[:16]

    def storage_keys(self) -> list[str]:
        return sorted({example.storage_key for examples in self.splits.values() for example in examples})


def _rank(seed: int, value: str) -> str:
    return hashlib.sha256(f"{seed}:{value}".encode()).hexdigest()


def usable_rows(table: pa.Table, level: str) -> pa.Table:
    mask = pc.and_(
        pc.and_(pc.equal(table.column("status"), HarvestStatus.ok.value), pc.is_null(table.column("excluded_reason"))),
        pc.and_(pc.is_valid(table.column("storage_key")), pc.is_valid(table.column(level))),
    )
    return table.filter(pc.fill_null(mask, False))


def plan_dataset(table: pa.Table, config: DataConfig) -> DatasetPlan:
    """Choose classes, cap them, and split by observation; raises DatasetError when it cannot."""
    level = config.taxon_level.value
    rows = usable_rows(table, level).to_pylist()
    if not rows:
        raise DatasetError(f"the manifest has no usable images (status ok, not excluded, with a {level})")
    by_class: dict[str, list[dict[str, str]]] = defaultdict(list)
    hierarchy: dict[str, dict[str, str | None]] = {}
    for row in rows:
        name = row[level]
        by_class[name].append(row)
        hierarchy.setdefault(name, {rank: row[rank] for rank in ("species", "genus", "family")})
    if config.classes is not None:
        missing = [name for name in config.classes if name not in by_class]
        if missing:
            raise DatasetError(f"classes not in the manifest at level {level}: {missing}")
        names = list(config.classes)
        small = [name for name in names if len(by_class[name]) < config.min_images_per_class]
        if small:
            raise DatasetError(f"classes with fewer than {config.min_images_per_class} usable images: {small}")
    else:
        # A class needs an observation for each split too; in top-N mode one that cannot be split is skipped.
        eligible = [name for name, members in by_class.items() if len(members) >= config.min_images_per_class
                    and len({row["observation_id"] for row in members}) >= len(SPLITS)]
        eligible.sort(key=lambda name: (-len(by_class[name]), name))
        names = sorted(eligible[: config.top_n])
        if len(names) < 2:
            raise DatasetError(
                f"fewer than 2 classes have at least {config.min_images_per_class} usable images "
                f"(from {len(SPLITS)} observations) at level {level}"
            )
    classes = [
        ClassLabel(index=index, name=name, species=hierarchy[name]["species"] if level == "species" else None,
                   genus=hierarchy[name]["genus"] if level in ("species", "genus") else None,
                   family=hierarchy[name]["family"])
        for index, name in enumerate(names)
    ]
    plan = DatasetPlan(classes=classes, splits={split: [] for split in SPLITS})
    fractions = (config.split.train, config.split.validation, config.split.test)
    assigned: dict[str, str] = {}  # observation -> split, so an observation never straddles splits
    for label in classes:
        members = sorted(by_class[label.name], key=lambda r: (_rank(config.split_seed, r["observation_id"]),
                                                               r["image_id"]))
        if config.images_per_class is not None:
            members = members[: config.images_per_class]
        observations = list(dict.fromkeys(row["observation_id"] for row in members))
        fresh = [obs for obs in observations if obs not in assigned]
        quota = _allocate(len(fresh), fractions)
        if quota is None:
            raise DatasetError(
                f"class {label.name!r} has {len(fresh)} observations; the split needs at least one observation "
                f"in each of train, validation and test (add images or lower the split's demands)"
            )
        cursor = 0
        for split, count in zip(SPLITS, quota, strict=True):
            for obs in fresh[cursor: cursor + count]:
                assigned[obs] = split
            cursor += count
        for row in members:
            plan.splits[assigned[row["observation_id"]]].append(
                Example(row["image_id"], row["observation_id"], row["storage_key"], label.index, _size(row))
            )
    for split in SPLITS:
        plan.splits[split].sort(key=lambda e: _rank(config.split_seed, e.image_id))
    return plan


def _size(row: Mapping[str, Any]) -> int | None:
    size = row.get("bytes")
    return int(size) if isinstance(size, int) else None


def _allocate(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int] | None:
    """Observations per split: each split gets at least one; None when n is too small for that."""
    if n < len(fractions):
        return None
    validation = max(1, round(n * fractions[1]))
    test = max(1, round(n * fractions[2]))
    train = n - validation - test
    if train < 1:
        return None
    return train, validation, test


def load_plan(manifests: ManifestStore, config: DataConfig) -> DatasetPlan:
    """Plan from the exact manifest version the config names (it must be pinned)."""
    if config.manifest_version is None:
        raise DatasetError("the spec's manifest version is not pinned")
    table = manifests.read(config.dataset, config.manifest_version, columns=COLUMNS)
    plan = plan_dataset(table, config)
    logger.info("dataset %s v%d: %d classes, %s", config.dataset, config.manifest_version, len(plan.classes),
                {split: len(examples) for split, examples in plan.splits.items()})
    return plan
