"""Import a source file into a new manifest version.

Formats: a GBIF Darwin Core Archive zip, a bare GBIF multimedia.txt, a CSV/TSV list of
url + label. The whole file is parsed (columnar, batch by batch) before anything is written,
so a bad file leaves storage untouched.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from services.downloader.importers.csvlist import ObservationGrouping, read_csv_list
from services.downloader.importers.errors import ImportFailed
from services.downloader.importers.gbif import Taxon, read_gbif
from services.downloader.importers.table import read_header
from shared.manifests import ManifestStore, conform
from shared.schemas import ManifestInfo, Operation

logger = logging.getLogger(__name__)

__all__ = ["ImportFailed", "ObservationGrouping", "SourceFormat", "Taxon", "detect_format", "import_source",
           "parse_source"]


class SourceFormat(StrEnum):
    gbif_archive = "gbif-archive"
    gbif_multimedia = "gbif-multimedia"
    csv_list = "csv"


@dataclass(frozen=True)
class ParsedSource:
    table: pa.Table
    format: SourceFormat
    stats: dict[str, int]


def detect_format(path: Path) -> SourceFormat:
    if not path.exists():
        raise ImportFailed(path.name, "no such file")
    if path.stat().st_size == 0:
        raise ImportFailed(path.name, "the file is empty", line=1)
    if zipfile.is_zipfile(path):
        return SourceFormat.gbif_archive
    with open(path, "rb") as stream:
        head = stream.read(4)
    if head.startswith(b"PK"):
        raise ImportFailed(path.name, "a damaged zip archive (cannot read its directory)")
    with open(path, "rb") as stream:
        delimiter = "\t" if b"\t" in stream.readline(1 << 16) else ","
    header = read_header(lambda: open(path, "rb"), path.name, delimiter)
    if "gbifID" in header:
        return SourceFormat.gbif_multimedia
    if "url" in header:
        return SourceFormat.csv_list
    raise ImportFailed(
        path.name,
        f"unknown format: expected a GBIF zip, a multimedia.txt (gbifID, identifier, ...) "
        f"or a CSV with url,label; the header has {header}",
        line=1,
    )


def parse_source(path: Path, taxon: Taxon | None = None,
                 grouping: ObservationGrouping = ObservationGrouping.photographer_date_place) -> ParsedSource:
    """Parse a whole source into one ImageRecord table in input order, duplicates collapsed."""
    source_format = detect_format(path)
    if source_format is SourceFormat.csv_list:
        parts = list(read_csv_list(path, grouping))
    else:
        parts = list(read_gbif(path, taxon))
    parts = [part for part in parts if part.num_rows]
    if not parts:
        raise ImportFailed(path.name, "no image rows (every row lacked a media URL, or the file has only a header)")
    table = pa.concat_tables(parts)
    read = table.num_rows
    if pc.count_distinct(table.column("image_id")).as_py() != read:
        table = table.append_column("__row", pa.array(range(read), pa.int64()))
        first = table.group_by("image_id", use_threads=False).aggregate([("__row", "min")])
        rows = pc.sort_indices(first.column("__row_min"))  # first occurrence wins, input order kept
        table = table.take(pc.take(first.column("__row_min"), rows)).drop_columns(["__row"])
    table = conform(table)
    stats = {
        "rows_read": read,
        "rows": table.num_rows,
        "duplicates_collapsed": read - table.num_rows,
        "skipped": int(pc.sum(pc.equal(table.column("status"), "skipped")).as_py() or 0),
        "without_species": table.column("species").null_count,
    }
    return ParsedSource(table, source_format, stats)


def import_source(
    path: Path, dataset: str, manifests: ManifestStore, taxon: Taxon | None = None,
    grouping: ObservationGrouping = ObservationGrouping.photographer_date_place,
) -> ManifestInfo:
    parsed = parse_source(path, taxon, grouping)
    parent = None
    if dataset in manifests.datasets():
        parent = manifests.latest_version(dataset)
    info = manifests.write(
        dataset, parsed.table, Operation.import_, parent=parent,
        source=f"{parsed.format.value}:{path.name}", stats=parsed.stats,
    )
    logger.info("imported %s into %s v%d: %s", path.name, dataset, info.version, parsed.stats)
    return info
