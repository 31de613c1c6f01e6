"""Immutable, versioned manifests: tables of ImageRecords stored as Parquet in object storage.

Layout (one dataset)::

    manifests/<dataset>/<version:06d>.parquet   the rows, written once (create-only)
    manifests/<dataset>/<version:06d>.json      its ManifestInfo (lineage: parent, operation)
    manifests/<dataset>/latest.json             pointer to the newest version (compare-and-set)

Writing never edits a version: it claims the next version number with a create-only PUT
(two concurrent writers get two different versions), then moves the ``latest`` pointer forward.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shared.schemas import (
    INVALID_DATASET,
    ExclusionReason,
    HarvestStatus,
    ImageRecord,
    ManifestInfo,
    Operation,
    check_dataset_name,
)
from shared.storage import KEEP, Keep, ObjectNotFound, ObjectStore, PreconditionFailed, TooMuchContention

logger = logging.getLogger(__name__)


# The Arrow schema of ImageRecord; tests check that it and the pydantic model name the same fields.
RECORD_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("observation_id", pa.string()),
    ("source", pa.string()),
    ("species", pa.string()),
    ("genus", pa.string()),
    ("family", pa.string()),
    ("scientific_name", pa.string()),
    ("basis_of_record", pa.string()),
    ("url", pa.string()),
    ("domain", pa.string()),
    ("license", pa.string()),
    ("rights_holder", pa.string()),
    ("creator", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("sha256", pa.string()),
    ("bytes", pa.int64()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("storage_key", pa.string()),
    ("excluded_reason", pa.string()),
    ("irrelevant_score", pa.float32()),
    ("duplicate_of", pa.string()),
])
REQUIRED = ("image_id", "observation_id", "source", "url", "domain", "status")
_ENUM_COLUMNS = {"status": HarvestStatus, "excluded_reason": ExclusionReason}


class ManifestError(ValueError):
    """A manifest that cannot be written or read as asked."""


class ManifestNotFound(LookupError):
    """No such dataset or version."""


def validate_dataset(name: str) -> str:
    try:
        return check_dataset_name(name)
    except ValueError:
        raise ManifestError(f"{INVALID_DATASET} (got {name[:80]!r})") from None


def conform(table: pa.Table) -> pa.Table:
    """Cast a table to RECORD_SCHEMA: missing optional columns become nulls, extra columns are refused."""
    extra = set(table.column_names) - set(RECORD_SCHEMA.names)
    if extra:
        raise ManifestError(f"columns not in the ImageRecord schema: {sorted(extra)}")
    missing_required = [name for name in REQUIRED if name not in table.column_names]
    if missing_required:
        raise ManifestError(f"required columns missing: {missing_required}")
    columns = []
    for field in RECORD_SCHEMA:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    conformed = pa.Table.from_arrays(columns, schema=RECORD_SCHEMA)
    for name in REQUIRED:
        if conformed.column(name).null_count:
            raise ManifestError(f"column {name!r} has {conformed.column(name).null_count} empty values")
    for name, enum in _ENUM_COLUMNS.items():
        allowed = {member.value for member in enum}
        values = set(pc.unique(conformed.column(name)).drop_null().to_pylist())
        if values - allowed:
            raise ManifestError(f"column {name!r} has values outside {sorted(allowed)}: {sorted(values - allowed)}")
    return conformed


def records_to_table(records: list[ImageRecord]) -> pa.Table:
    rows = [record.model_dump(mode="json") for record in records]
    return conform(pa.Table.from_pylist(rows, schema=RECORD_SCHEMA))


def table_to_records(table: pa.Table) -> list[ImageRecord]:
    """For small tables (tests, samples); large tables stay columnar."""
    return [ImageRecord.model_validate(row) for row in table.to_pylist()]


class ManifestStore:
    """Read and write manifest versions in one bucket."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @staticmethod
    def prefix(dataset: str) -> str:
        return f"manifests/{validate_dataset(dataset)}/"

    @classmethod
    def parquet_key(cls, dataset: str, version: int) -> str:
        return f"{cls.prefix(dataset)}{version:06d}.parquet"

    @classmethod
    def info_key(cls, dataset: str, version: int) -> str:
        return f"{cls.prefix(dataset)}{version:06d}.json"

    @classmethod
    def latest_key(cls, dataset: str) -> str:
        return f"{cls.prefix(dataset)}latest.json"

    # reading
    def datasets(self) -> list[str]:
        names = {key.split("/")[1] for key in self.store.list("manifests/") if key.endswith("/latest.json")}
        return sorted(names)

    def versions(self, dataset: str) -> list[ManifestInfo]:
        infos = []
        for key in self.store.list(self.prefix(dataset), recursive=False):
            name = key.rsplit("/", 1)[1]
            if name.endswith(".json") and name[:-5].isdigit():
                infos.append(ManifestInfo.model_validate(self.store.get_json(key)))
        return sorted(infos, key=lambda info: info.version)

    def latest_version(self, dataset: str) -> int:
        pointer = self.store.read_pointer(self.latest_key(dataset))
        if pointer is None:
            raise ManifestNotFound(f"dataset {dataset!r} has no manifest")
        return int(pointer.value["version"])

    def info(self, dataset: str, version: int | None = None) -> ManifestInfo:
        version = self.latest_version(dataset) if version is None else version
        try:
            return ManifestInfo.model_validate(self.store.get_json(self.info_key(dataset, version)))
        except ObjectNotFound:
            raise ManifestNotFound(f"dataset {dataset!r} has no version {version}") from None

    def download(self, dataset: str, version: int | None, path: Path) -> tuple[ManifestInfo, Path]:
        """Fetch a version's Parquet file to a local path (to stream it in batches)."""
        info = self.info(dataset, version)
        self.store.get_file(info.storage_key, path)
        return info, path

    def read(self, dataset: str, version: int | None = None, columns: list[str] | None = None) -> pa.Table:
        info = self.info(dataset, version)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "manifest.parquet"
            self.store.get_file(info.storage_key, path)
            table = pq.read_table(path, columns=columns)
        return table

    # writing
    def write(
        self,
        dataset: str,
        table: pa.Table,
        operation: Operation,
        parent: int | None = None,
        source: str | None = None,
        stats: dict[str, int] | None = None,
    ) -> ManifestInfo:
        """Store ``table`` as a new version of ``dataset`` and return its info."""
        validate_dataset(dataset)
        table = conform(table)
        if parent is not None:
            self.info(dataset, parent)  # the parent must exist
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "manifest.parquet"
            pq.write_table(table, path, compression="zstd", row_group_size=256_000)
            content_hash = _file_sha256(path)
            version = self._next_version(dataset)
            while True:
                key = self.parquet_key(dataset, version)
                try:
                    self.store.put_if(key, path, None, "application/vnd.apache.parquet")
                    break
                except PreconditionFailed:  # another writer claimed this number first
                    version += 1
        info = ManifestInfo(
            dataset=dataset,
            version=version,
            parent=parent,
            operation=operation,
            created_at=datetime.now(UTC),
            rows=table.num_rows,
            content_hash=content_hash,
            storage_key=key,
            source=source,
            stats=stats or {},
        )
        self.store.put_json(self.info_key(dataset, version), info.model_dump(mode="json"))
        self._advance_latest(dataset, version)
        logger.info("wrote manifest %s v%d (%s, %d rows)", dataset, version, operation.value, table.num_rows)
        return info

    def _next_version(self, dataset: str) -> int:
        pointer = self.store.read_pointer(self.latest_key(dataset))
        return (int(pointer.value["version"]) if pointer else 0) + 1

    def _advance_latest(self, dataset: str, version: int) -> None:
        def advance(value: dict[str, Any] | None) -> dict[str, Any] | Keep:
            if value is not None and int(value["version"]) >= version:
                return KEEP  # a newer version already landed
            return {"version": version}

        try:
            self.store.update(self.latest_key(dataset), advance, attempts=50)
        except TooMuchContention as exc:
            raise ManifestError(f"could not advance {dataset!r} to version {version}: {exc}") from exc


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def summary(table: pa.Table) -> dict[str, Any]:
    """Counts a person wants to see about a manifest: rows, classes, domains, licences, statuses."""

    def counts(column: str, top: int = 20) -> dict[str, int]:
        if table.num_rows == 0:
            return {}
        values = pc.value_counts(pc.fill_null(table.column(column), "(none)"))
        pairs = sorted(((v["values"].as_py(), v["counts"].as_py()) for v in values), key=lambda p: -p[1])
        return dict(pairs[:top])

    return {
        "rows": table.num_rows,
        "observations": pc.count_distinct(table.column("observation_id")).as_py() if table.num_rows else 0,
        "species": pc.count_distinct(table.column("species")).as_py() if table.num_rows else 0,
        "domains": pc.count_distinct(table.column("domain")).as_py() if table.num_rows else 0,
        "top_species": counts("species"),
        "top_domains": counts("domain"),
        "licenses": counts("license"),
        "status": counts("status"),
    }
