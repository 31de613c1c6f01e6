"""GBIF occurrence downloads: a Darwin Core Archive zip, or a bare multimedia.txt.

The archive's core is occurrence.txt (one row per observation, keyed by gbifID) and its
multimedia extension has one row per photo. Taxon fields come from the occurrence and are
joined on gbifID; ``image_id`` hashes (gbifID, media URL), ``observation_id`` is the gbifID.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc

from services.downloader.importers.errors import ImportFailed
from services.downloader.importers.identity import domains, image_ids, is_http_url
from services.downloader.importers.table import iter_batches, read_header, require_columns

MULTIMEDIA_ROW_TYPE = "http://rs.gbif.org/terms/1.0/Multimedia"
OCCURRENCE_ROW_TYPE = "http://rs.tdwg.org/dwc/terms/Occurrence"
MULTIMEDIA_COLUMNS = ["gbifID", "type", "format", "identifier", "license", "rightsHolder", "creator"]
MULTIMEDIA_REQUIRED = ["gbifID", "identifier"]
OCCURRENCE_COLUMNS = ["gbifID", "species", "genus", "family", "scientificName", "basisOfRecord"]


@dataclass(frozen=True)
class Taxon:
    """A taxon to give every row of a bare multimedia.txt (which has no taxon columns)."""

    species: str
    genus: str | None = None
    family: str | None = None

    @property
    def resolved_genus(self) -> str:
        return self.genus or self.species.split()[0]


@dataclass(frozen=True)
class ArchiveFile:
    """One text file inside (or outside) the archive, opened on demand."""

    name: str
    opener: partial[IO[bytes]]
    delimiter: str = "\t"


def locate_archive_files(archive: zipfile.ZipFile, name: str) -> tuple[ArchiveFile, ArchiveFile | None]:
    """The multimedia and occurrence files of a DwC-A zip, from meta.xml when it is there."""
    members = set(archive.namelist())
    multimedia, occurrence = "multimedia.txt", "occurrence.txt"
    if "meta.xml" in members:
        try:
            root = ET.fromstring(archive.read("meta.xml"))
        except ET.ParseError as exc:
            raise ImportFailed(f"{name}!meta.xml", f"not valid XML ({exc})") from None
        for element in root:
            row_type = element.get("rowType", "")
            location = element.find("{*}files/{*}location")
            if location is None or not location.text:
                continue
            if row_type == MULTIMEDIA_ROW_TYPE:
                multimedia = location.text.strip()
            elif row_type == OCCURRENCE_ROW_TYPE:
                occurrence = location.text.strip()
    if multimedia not in members:
        raise ImportFailed(name, f"the archive has no multimedia file ({multimedia}); members: {sorted(members)}")
    found_occurrence = (
        ArchiveFile(f"{name}!{occurrence}", partial(archive.open, occurrence)) if occurrence in members else None
    )
    return ArchiveFile(f"{name}!{multimedia}", partial(archive.open, multimedia)), found_occurrence


def read_occurrence_taxa(occurrence: ArchiveFile) -> pa.Table:
    header = read_header(occurrence.opener, occurrence.name, occurrence.delimiter)
    require_columns(header, ["gbifID"], occurrence.name)
    columns = [column for column in OCCURRENCE_COLUMNS if column in header]
    batches = list(iter_batches(occurrence.opener, occurrence.name, occurrence.delimiter, columns, quoted=False))
    table = pa.Table.from_batches(batches) if batches else pa.table({c: pa.array([], pa.string()) for c in columns})
    for column in OCCURRENCE_COLUMNS:
        if column not in table.column_names:
            table = table.append_column(column, pa.nulls(table.num_rows, pa.string()))
    # One taxon per gbifID: the first occurrence row wins.
    table = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    first = table.group_by("gbifID", use_threads=False).aggregate([("__row", "min")])
    return table.take(first.column("__row_min")).drop_columns(["__row"])


def multimedia_batches(multimedia: ArchiveFile) -> Iterator[pa.RecordBatch]:
    header = read_header(multimedia.opener, multimedia.name, multimedia.delimiter)
    require_columns(header, MULTIMEDIA_REQUIRED, multimedia.name)
    columns = [column for column in MULTIMEDIA_COLUMNS if column in header]
    yield from iter_batches(multimedia.opener, multimedia.name, multimedia.delimiter, columns, quoted=False)


def to_records(batch: pa.RecordBatch, taxon: Taxon | None) -> pa.Table:
    """Map one batch of multimedia rows onto the ImageRecord columns (taxon columns null without ``taxon``)."""
    table = pa.Table.from_batches([batch])
    for column in MULTIMEDIA_COLUMNS:
        if column not in table.column_names:
            table = table.append_column(column, pa.nulls(table.num_rows, pa.string()))
    table = table.filter(pc.invert(pc.is_null(table.column("identifier"))))
    table = table.filter(pc.invert(pc.is_null(table.column("gbifID"))))
    n = table.num_rows
    url = pc.utf8_trim_whitespace(table.column("identifier"))
    gbif_id = pc.utf8_trim_whitespace(table.column("gbifID"))

    def taxon_column(name: str, fixed: str | None) -> pa.Array:
        if taxon is not None and fixed is not None:
            return pa.repeat(pa.scalar(fixed, pa.string()), n)
        return pa.nulls(n, pa.string())

    kind = pc.fill_null(table.column("type"), "StillImage")
    media_format = pc.fill_null(table.column("format"), "")
    still = pc.or_(pc.equal(kind, "StillImage"), pc.starts_with(media_format, "image/"))
    http = is_http_url(url)
    error = pc.if_else(
        pc.invert(http),
        pa.scalar("unsupported URL (only http and https are harvested)"),
        pc.if_else(
            still, pa.scalar(None, pa.string()), pc.binary_join_element_wise("not a still image (type ", kind, ")", "")
        ),
    )
    status = pc.if_else(pc.is_null(error), "pending", "skipped")
    return pa.table({
        "image_id": image_ids("gbif", gbif_id, url),
        "observation_id": gbif_id,
        "source": pa.repeat(pa.scalar("gbif", pa.string()), n),
        "species": taxon_column("species", taxon.species if taxon else None),
        "genus": taxon_column("genus", taxon.resolved_genus if taxon else None),
        "family": taxon_column("family", taxon.family if taxon else None),
        "scientific_name": taxon_column("scientificName", taxon.species if taxon else None),
        "basis_of_record": taxon_column("basisOfRecord", None),
        "url": url,
        "domain": domains(url),
        "license": table.column("license"),
        "rights_holder": table.column("rightsHolder"),
        "creator": table.column("creator"),
        "status": status,
        "error": error,
    })


# ImageRecord column <- occurrence column
TAXON_COLUMNS = {"species": "species", "genus": "genus", "family": "family",
                 "scientific_name": "scientificName", "basis_of_record": "basisOfRecord"}


def attach_taxa(records: pa.Table, taxa: pa.Table) -> pa.Table:
    """Fill the taxon columns from the occurrence table, keeping the row order.

    One hash lookup of every observation id in the occurrence ids (instead of a join per batch,
    which would rebuild the hash table of every occurrence for each batch).
    """
    rows = pc.index_in(records.column("observation_id"), value_set=taxa.column("gbifID"))
    for record_column, occurrence_column in TAXON_COLUMNS.items():
        index = records.schema.get_field_index(record_column)
        records = records.set_column(index, record_column, taxa.column(occurrence_column).take(rows))
    return records


def read_gbif(path: Path, taxon: Taxon | None = None) -> Iterator[pa.Table]:
    """ImageRecord tables from a DwC-A zip or a bare multimedia.txt (taxa from the occurrence file or ``taxon``)."""
    name = path.name
    with ExitStack() as stack:
        if zipfile.is_zipfile(path):
            archive = stack.enter_context(zipfile.ZipFile(path))
            multimedia, occurrence = locate_archive_files(archive, name)
            taxa = read_occurrence_taxa(occurrence) if occurrence is not None and taxon is None else None
        else:
            multimedia = ArchiveFile(name, partial(open, path, "rb"))
            taxa = None
        parts = [to_records(batch, taxon) for batch in multimedia_batches(multimedia)]
    if not parts:
        return
    records = pa.concat_tables(parts)
    yield attach_taxa(records, taxa) if taxa is not None else records
