"""Human labels (relevant / irrelevant per image), stored at ``curation/labels.json``.

One JSON object keyed by image_id, updated by compare-and-set like the blacklist; a later label of
the same image replaces the earlier one (a person may change their mind), and the previous value is
kept in ``history`` so nothing is lost.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from shared.storage import ObjectStore

logger = logging.getLogger(__name__)

LABELS_KEY = "curation/labels.json"


class Label(StrEnum):
    relevant = "relevant"
    irrelevant = "irrelevant"


class StoredLabel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_id: str
    label: Label
    dataset: str
    domain: str
    storage_key: str | None = None
    actor: str
    at: datetime


class LabelStore:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def all(self) -> dict[str, StoredLabel]:
        pointer = self.store.read_pointer(LABELS_KEY)
        if pointer is None:
            return {}
        return {key: StoredLabel.model_validate(value) for key, value in pointer.value.get("labels", {}).items()}

    def add(self, labels: list[StoredLabel]) -> int:
        """Store ``labels`` (a relabelled image keeps its previous label in the history); returns the total
        number of labelled images."""

        def change(value: dict[str, Any] | None) -> dict[str, Any]:
            document: dict[str, Any] = value if value is not None else {"labels": {}, "history": []}
            current = document["labels"]
            for item in labels:
                previous = current.get(item.image_id)
                if previous is not None:
                    document["history"].append(previous)
                current[item.image_id] = item.model_dump(mode="json")
            return document

        stored = self.store.update(LABELS_KEY, change)
        return len(stored["labels"]) if stored else 0

    def table(self) -> pa.Table:
        """image_id -> irrelevant (bool), for columnar joins."""
        labels = self.all()
        return pa.table({
            "image_id": pa.array(list(labels), pa.string()),
            "human_irrelevant": pa.array([item.label is Label.irrelevant for item in labels.values()], pa.bool_()),
        })
