"""Plain lists of image URLs: CSV or TSV with ``url`` and ``label`` (+ optional ``observation_id``).

``label`` is the species name (``species`` is accepted as a synonym); genus is its first word.
``image_id`` hashes (observation_id, url); without an observation id every photo is its own observation.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from services.downloader.importers.identity import domains, image_ids, is_http_url
from services.downloader.importers.table import iter_batches, read_header, require_columns

OPTIONAL = ["observation_id", "genus", "family", "license", "rights_holder"]


def sniff_delimiter(path: Path) -> str:
    with open(path, "rb") as stream:
        first = stream.readline(1 << 16)
    return "\t" if first.count(b"\t") > first.count(b",") else ","


def _optional(table: pa.Table, column: str) -> pa.Array:
    return table.column(column) if column in table.column_names else pa.nulls(table.num_rows, pa.string())


def read_csv_list(path: Path) -> Iterator[pa.Table]:
    name = path.name
    delimiter = sniff_delimiter(path)
    opener = partial(open, path, "rb")
    header = read_header(opener, name, delimiter)  # type: ignore[arg-type]
    label = "label" if "label" in header else "species"
    require_columns(header, ["url", label], name)
    columns = ["url", label, *(column for column in OPTIONAL if column in header)]
    for batch in iter_batches(opener, name, delimiter, columns, quoted=True):  # type: ignore[arg-type]
        table = pa.Table.from_batches([batch])
        table = table.filter(pc.invert(pc.is_null(table.column("url"))))
        n = table.num_rows
        url = pc.utf8_trim_whitespace(table.column("url"))
        species = pc.utf8_trim_whitespace(table.column(label))

        given_observation = _optional(table, "observation_id")
        ids = image_ids("csv", given_observation, url)
        genus = _optional(table, "genus")
        first_word = pc.struct_field(pc.extract_regex(pc.fill_null(species, ""), r"^(?P<g>\S+)"), "g")
        http = is_http_url(url)
        yield pa.table({
            "image_id": ids,
            "observation_id": pc.coalesce(given_observation, ids),
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
