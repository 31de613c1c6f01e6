"""Plain lists of image URLs: CSV or TSV with ``url`` and ``label`` (+ optional ``observation_id``).

``label`` is the species name (``species`` is accepted as a synonym); genus is its first word.
``image_id`` hashes (observation_id as given, url), whatever the grouping below, so ids never depend on an option.

A row without an ``observation_id`` gets one derived from photographer + date + place + species when the
grouping is ``photographer_date_place`` (the default) and the row has all of them: burst shots of one mushroom
then share an observation and never straddle train/validation/test. The optional columns:

- photographer: ``recorded_by``, else ``rights_holder``;
- date: ``event_date``, its day (the first 10 characters of an ISO date or timestamp);
- place: ``latitude`` and ``longitude`` rounded to 3 decimals (about 100 m), else ``locality``.

The species is part of the key because an observation is one organism: two species photographed on one walk
are two observations. A row missing any part stays its own observation, as with ``none``.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from services.downloader.importers.identity import domains, image_ids, is_http_url
from services.downloader.importers.table import iter_batches, read_header, require_columns

OPTIONAL = ["observation_id", "genus", "family", "license", "rights_holder"]
GROUPING_COLUMNS = ["recorded_by", "event_date", "latitude", "longitude", "locality"]
PLACE_DECIMALS = 3
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)\s*$"


class ObservationGrouping(StrEnum):
    """How rows without an ``observation_id`` are grouped into observations."""

    none = "none"  # every such photo is its own observation
    photographer_date_place = "photographer_date_place"  # same photographer, day, place and species: one observation


def sniff_delimiter(path: Path) -> str:
    with open(path, "rb") as stream:
        first = stream.readline(1 << 16)
    return "\t" if first.count(b"\t") > first.count(b",") else ","


def _optional(table: pa.Table, column: str) -> pa.Array:
    return table.column(column) if column in table.column_names else pa.nulls(table.num_rows, pa.string())


def _clean(values: pa.Array) -> pa.Array:
    """Trimmed, case-folded, inner whitespace collapsed; empty -> null."""
    text = pc.utf8_lower(pc.replace_substring_regex(pc.utf8_trim_whitespace(values), r"\s+", " "))
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)


def _rounded(values: pa.Array) -> pa.Array:
    """A coordinate rounded to PLACE_DECIMALS, as text; null where it is not a number."""
    number = pc.if_else(pc.fill_null(pc.match_substring_regex(values, _NUMBER), False),
                        pc.utf8_trim_whitespace(values), pa.scalar(None, pa.string()))
    return pc.cast(pc.round(pc.cast(number, pa.float64()), PLACE_DECIMALS), pa.string())


def derived_observation_ids(table: pa.Table, species: pa.Array) -> pa.Array:
    """A stable id per (photographer, day, place, species); null where any of them is missing."""
    photographer = pc.coalesce(_clean(_optional(table, "recorded_by")), _clean(_optional(table, "rights_holder")))
    day = pc.utf8_slice_codeunits(_clean(_optional(table, "event_date")), 0, 10)
    coordinates = pc.binary_join_element_wise(_rounded(_optional(table, "latitude")),
                                              _rounded(_optional(table, "longitude")), ",")
    place = pc.coalesce(coordinates, _clean(_optional(table, "locality")))
    taxon = _clean(species)
    complete = pc.fill_null(pc.and_(pc.and_(pc.is_valid(photographer), pc.is_valid(day)),
                                    pc.and_(pc.is_valid(place), pc.is_valid(taxon))), False)
    ids = image_ids("csv-observation", photographer, day, place, taxon)
    return pc.if_else(complete, pc.binary_join_element_wise("csv-obs-", ids, ""), pa.scalar(None, pa.string()))


def read_csv_list(path: Path, grouping: ObservationGrouping = ObservationGrouping.photographer_date_place
                  ) -> Iterator[pa.Table]:
    name = path.name
    delimiter = sniff_delimiter(path)
    opener = partial(open, path, "rb")
    header = read_header(opener, name, delimiter)  # type: ignore[arg-type]
    label = "label" if "label" in header else "species"
    require_columns(header, ["url", label], name)
    wanted = OPTIONAL + (GROUPING_COLUMNS if grouping is ObservationGrouping.photographer_date_place else [])
    columns = ["url", label, *(column for column in wanted if column in header)]
    for batch in iter_batches(opener, name, delimiter, columns, quoted=True):  # type: ignore[arg-type]
        table = pa.Table.from_batches([batch])
        table = table.filter(pc.invert(pc.is_null(table.column("url"))))
        n = table.num_rows
        url = pc.utf8_trim_whitespace(table.column("url"))
        species = pc.utf8_trim_whitespace(table.column(label))

        given_observation = _optional(table, "observation_id")
        ids = image_ids("csv", given_observation, url)
        observation = pc.coalesce(given_observation, derived_observation_ids(table, species), ids) if (
            grouping is ObservationGrouping.photographer_date_place) else pc.coalesce(given_observation, ids)
        genus = _optional(table, "genus")
        first_word = pc.struct_field(pc.extract_regex(pc.fill_null(species, ""), r"^(?P<g>\S+)"), "g")
        http = is_http_url(url)
        yield pa.table({
            "image_id": ids,
            "observation_id": observation,
            "source": pa.repeat(pa.scalar("csv", pa.string()), n),
            "species": species,
            "genus": pc.coalesce(genus, first_word),
            "family": _optional(table, "family"),
            "scientific_name": species,
            "url": url,
            "domain": domains(url),
            "license": _optional(table, "license"),
            "rights_holder": _optional(table, "rights_holder"),
            "status": pc.if_else(http, "pending", "skipped"),
            "error": pc.if_else(http, pa.scalar(None, pa.string()),
                                "unsupported URL (only http and https are harvested)"),
        })
