"""A harvest's durable state in object storage, so a harvest killed at any point resumes.

    harvests/<id>/request.json                the request (dataset, version, options)
    harvests/<id>/checkpoints/<seq>.json      results of finished rows, appended every few seconds
    harvests/<id>/checkpoints/<shard>-<seq>.json   the same, written by one shard (``jobs.py``)
    harvests/<id>/plans/<attempt>.json        the shards of one attempt: the image ids each fetches
    harvests/<id>/result.json                 the outcome: state, manifest version written, counts

Every writer (the harvest run whole, or each of its shards) numbers its own checkpoints, so shards running on
many workers never overwrite each other's, and a retried shard goes on from its own last one. Reading takes
every writer's: shards fetch disjoint rows, and two results of one stored row never disagree.

A row's result is checkpointed only after its image is in storage, so a restart refetches at most
the rows of the last few seconds, and their content-addressed writes find the images already there.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.dataclasses import dataclass as pydantic_dataclass

from services.downloader.harvest.options import HarvestOptions
from shared.queue import JobState
from shared.schemas import HarvestStatus
from shared.storage import ObjectNotFound, ObjectStore

logger = logging.getLogger(__name__)

HARVEST_ID = re.compile(r"^[a-z0-9][a-z0-9-]{7,63}$")
WRITER = re.compile(r"^[a-z][a-z0-9-]{0,40}$")


class HarvestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    dataset: str
    version: int = Field(ge=1)
    options: HarvestOptions = Field(default_factory=HarvestOptions)
    created_at: datetime


@pydantic_dataclass(slots=True, config=ConfigDict(extra="forbid"))
class RowResult:
    """The harvest columns of one manifest row. A slotted dataclass (validated like a model): a harvest keeps
    one per row in memory: about 640 B each with its strings, against 1.65 KB as a pydantic model."""

    image_id: str
    status: HarvestStatus
    error: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    width: int | None = None
    height: int | None = None
    storage_key: str | None = None


ROW_RESULTS = TypeAdapter(list[RowResult])


class HarvestOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: JobState  # completed | cancelled
    dataset: str
    parent_version: int
    manifest_version: int | None = None
    counts: dict[str, Any] = Field(default_factory=dict)
    finished_at: datetime


class HarvestState:
    def __init__(self, store: ObjectStore, harvest_id: str, writer: str | None = None) -> None:
        if not HARVEST_ID.match(harvest_id):
            raise ValueError(f"invalid harvest id {harvest_id!r}")
        if writer is not None and not WRITER.match(writer):
            raise ValueError(f"invalid checkpoint writer {writer!r}")
        self.store = store
        self.id = harvest_id
        self.prefix = f"harvests/{harvest_id}/"
        self.writer = writer
        self._next_seq = 0

    def _seq_of(self, key: str) -> int | None:
        """The number of one of this writer's checkpoints, else None."""
        name = key.rsplit("/", 1)[1].removesuffix(".json")
        writer, _, seq = name.rpartition("-")
        return int(seq) if (writer or None) == self.writer else None

    def save_request(self, request: HarvestRequest) -> None:
        self.store.put_json(self.prefix + "request.json", request.model_dump(mode="json"))

    def request(self) -> HarvestRequest:
        return HarvestRequest.model_validate(self.store.get_json(self.prefix + "request.json"))

    def exists(self) -> bool:
        return self.store.exists(self.prefix + "request.json")

    def load_results(self) -> dict[str, RowResult]:
        """Every checkpointed row result; later checkpoints win (they never disagree on stored rows)."""
        results: dict[str, RowResult] = {}
        keys = sorted(self.store.list(self.prefix + "checkpoints/"))
        for key in keys:
            for result in ROW_RESULTS.validate_python(self.store.get_json(key)):
                results[result.image_id] = result
            seq = self._seq_of(key)
            if seq is not None:
                self._next_seq = max(self._next_seq, seq + 1)
        return results

    def append(self, results: list[RowResult]) -> None:
        if not results:
            return
        name = f"{self._next_seq:08d}" if self.writer is None else f"{self.writer}-{self._next_seq:08d}"
        key = f"{self.prefix}checkpoints/{name}.json"
        self.store.put_json(key, ROW_RESULTS.dump_python(results, mode="json", exclude_none=True))
        self._next_seq += 1

    def outcome(self) -> HarvestOutcome | None:
        try:
            return HarvestOutcome.model_validate(self.store.get_json(self.prefix + "result.json"))
        except ObjectNotFound:
            return None

    def save_outcome(self, outcome: HarvestOutcome) -> None:
        self.store.put_json(self.prefix + "result.json", outcome.model_dump(mode="json"))

    def save_plan(self, attempt: int, plan: dict[str, Any]) -> None:
        """``plan``: ``shards`` (the image ids of each) and ``progress`` (the counts of the rows in none)."""
        self.store.put_json(f"{self.prefix}plans/{attempt:06d}.json", plan)

    def plan(self, attempt: int) -> dict[str, Any] | None:
        """The plan of ``attempt``, if it has been planned."""
        try:
            value: dict[str, Any] = self.store.get_json(f"{self.prefix}plans/{attempt:06d}.json")
        except ObjectNotFound:
            return None
        return value
