"""Streaming reads of delimited text (GBIF TSV, CSV lists) with errors a person can act on.

pyarrow parses in native code and hands back record batches, so millions of rows never
become Python objects. When pyarrow rejects the input, a slow pure-Python pass over the
raw bytes finds the exact line and column to report.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterator
from typing import IO

import pyarrow as pa
import pyarrow.csv as pacsv

from services.downloader.importers.errors import ImportFailed

BLOCK_SIZE = 16 << 20

Opener = Callable[[], IO[bytes]]


def read_header(open_file: Opener, name: str, delimiter: str) -> list[str]:
    with open_file() as stream:
        first = stream.readline(1 << 20)
    if not first.strip():
        raise ImportFailed(name, "the file is empty", line=1)
    try:
        text = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise ImportFailed(name, f"the header is not UTF-8 text ({exc.reason} at byte {exc.start})", 1) from None
    return [column.strip() for column in text.split(delimiter)] if delimiter == "\t" else next(
        csv.reader([text], delimiter=delimiter)
    )


def require_columns(header: list[str], required: list[str], name: str) -> None:
    missing = [column for column in required if column not in header]
    if missing:
        raise ImportFailed(name, f"missing column(s) {missing}; the header has {header}", line=1)


def iter_batches(
    open_file: Opener, name: str, delimiter: str, columns: list[str], quoted: bool
) -> Iterator[pa.RecordBatch]:
    """Record batches of the named columns, all as strings (empty fields become nulls)."""
    invalid: list[tuple[int | None, int, int]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append((row.number, row.expected_columns, row.actual_columns))
        return "error"

    read_options = pacsv.ReadOptions(block_size=BLOCK_SIZE, use_threads=True, encoding="utf8")
    parse_options = pacsv.ParseOptions(
        delimiter=delimiter,
        quote_char='"' if quoted else False,
        double_quote=quoted,
        newlines_in_values=False,
        invalid_row_handler=on_invalid,
    )
    convert_options = pacsv.ConvertOptions(
        include_columns=columns,
        column_types={column: pa.string() for column in columns},
        strings_can_be_null=True,
        null_values=[""],
    )
    with open_file() as stream:
        try:
            reader = pacsv.open_csv(stream, read_options, parse_options, convert_options)
            yield from reader
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            if invalid:
                number, expected, actual = invalid[0]
                line = number if number is not None else locate_bad_row(open_file, delimiter, quoted)[0]
                raise ImportFailed(
                    name, f"expected {expected} fields, found {actual}", line=line, column=actual + 1
                ) from None
            line, column, reason = locate_bad_row(open_file, delimiter, quoted)
            raise ImportFailed(name, reason or f"unreadable input ({exc})", line=line, column=column) from None


def locate_bad_row(open_file: Opener, delimiter: str, quoted: bool) -> tuple[int | None, int | None, str | None]:
    """The first line that is not UTF-8 or has the wrong number of fields (1-based line and field)."""
    with open_file() as stream:
        raw_lines: Iterator[bytes] = iter(stream)
        expected: int | None = None
        decoder = codecs.getincrementaldecoder("utf-8")()
        for number, raw in enumerate(raw_lines, start=1):
            try:
                text = decoder.decode(raw, final=False).rstrip("\r\n")
            except UnicodeDecodeError as exc:
                prefix = raw[: exc.start]
                field = prefix.count(delimiter.encode()) + 1
                return number, field, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} in field {field})"
            if number == 1:
                text = text.lstrip("\ufeff")
            fields = next(csv.reader([text], delimiter=delimiter)) if quoted else text.split(delimiter)
            if expected is None:
                expected = len(fields)
            elif text and len(fields) != expected:
                return number, len(fields), f"expected {expected} fields, found {len(fields)}"
    return None, None, None
