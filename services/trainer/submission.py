"""Accepting a spec: pin its manifest version and check that the dataset can be split, before queueing it.

Errors become 422s with fixed detail prefixes (tests assert them); the rest of the detail says what is wrong.
"""

from __future__ import annotations

from fastapi import HTTPException, status

from services.trainer.dataset import COLUMNS, DatasetError, DatasetPlan, plan_dataset
from shared.manifests import ManifestError, ManifestNotFound, ManifestStore
from shared.training import TrainingJobSpec

MANIFEST_NOT_FOUND = "manifest version not found"
DATASET_UNUSABLE = "dataset unusable for this spec"


def pin_and_plan(manifests: ManifestStore, spec: TrainingJobSpec) -> tuple[TrainingJobSpec, DatasetPlan]:
    data = spec.data
    try:
        version = data.manifest_version or manifests.latest_version(data.dataset)
        table = manifests.read(data.dataset, version, columns=COLUMNS)
    except (ManifestNotFound, ManifestError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{MANIFEST_NOT_FOUND}: {exc}") from None
    pinned = spec.pinned(version)
    try:
        plan = plan_dataset(table, pinned.data)
    except DatasetError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{DATASET_UNUSABLE}: {exc}") from None
    return pinned, plan
