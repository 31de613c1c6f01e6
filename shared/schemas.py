"""The data contract between services: manifest rows, manifest versions and shared enums.

The JSON Schema files under ``shared/jsonschema/`` are generated from these classes
(``sporeprint schema export``); a test fails when the two drift.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

DATASET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
INVALID_DATASET = "invalid dataset name: use 1-64 of a-z 0-9 . _ - starting with a letter or digit"


def check_dataset_name(name: str) -> str:
    """``name`` if it is a valid dataset name, else ValueError with :data:`INVALID_DATASET`."""
    if not DATASET_NAME.match(name):
        raise ValueError(INVALID_DATASET)
    return name


# A dataset name in any request (body, path, query, form): every service answers 422 with INVALID_DATASET.
DatasetName = Annotated[str, AfterValidator(check_dataset_name), WithJsonSchema(
    {"type": "string", "pattern": DATASET_NAME.pattern, "minLength": 1, "maxLength": 64})]


class HarvestStatus(StrEnum):
    pending = "pending"  # imported, not fetched yet
    ok = "ok"  # stored in object storage
    failed = "failed"  # fetched and failed; `error` says why
    skipped = "skipped"  # not fetched on purpose (blacklist, noai, class cap); `error` says why


class ExclusionReason(StrEnum):
    blacklisted = "blacklisted"
    irrelevant = "irrelevant"
    broken = "broken"
    too_small = "too_small"
    duplicate = "duplicate"
    not_harvested = "not_harvested"


class Operation(StrEnum):
    import_ = "import"
    harvest = "harvest"
    curation = "curation"


class TaxonLevel(StrEnum):
    species = "species"
    genus = "genus"
    family = "family"


class ImageRecord(BaseModel):
    """One manifest row: one image of one observation."""

    model_config = ConfigDict(extra="forbid")

    image_id: str = Field(description="Stable id: a hash of the source's own keys (GBIF: gbifID + media URL)")
    observation_id: str = Field(description="All photos of one observation share it (GBIF: gbifID)")
    source: str = Field(description="Which importer produced the row: gbif or csv")
    species: str | None = None
    genus: str | None = None
    family: str | None = None
    scientific_name: str | None = None
    basis_of_record: str | None = None
    url: str
    domain: str = Field(description="Lower-case host of `url`")
    license: str | None = None
    rights_holder: str | None = None
    creator: str | None = None
    # harvest fields
    status: HarvestStatus = HarvestStatus.pending
    error: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    width: int | None = None
    height: int | None = None
    storage_key: str | None = None
    # curation fields
    excluded_reason: ExclusionReason | None = None
    irrelevant_score: float | None = Field(default=None, ge=0, le=1)
    duplicate_of: str | None = None


class ManifestInfo(BaseModel):
    """One immutable manifest version: where it came from and what it holds."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    version: int = Field(ge=1)
    parent: int | None = Field(default=None, description="The version this one was derived from")
    operation: Operation
    created_at: datetime
    rows: int = Field(ge=0)
    content_hash: str = Field(description="sha256 of the Parquet file")
    storage_key: str
    source: str | None = Field(default=None, description="File or job that produced the version")
    stats: dict[str, int] = Field(default_factory=dict, description="Counts the operation reports")


CONTRACT_MODELS: dict[str, type[BaseModel]] = {
    "ImageRecord": ImageRecord,
    "ManifestInfo": ManifestInfo,
}
