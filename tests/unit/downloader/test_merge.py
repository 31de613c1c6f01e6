"""Merging row results into the input manifest (Arrow, no per-row Python loop)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from services.downloader.harvest.merge import harvest_stats, merge_results, results_table
from services.downloader.harvest.state import RowResult
from shared.manifests import RECORD_SCHEMA

pytestmark = pytest.mark.unit


def manifest(rows: list[dict[str, object]]) -> pa.Table:
    columns = {field.name: [row.get(field.name) for row in rows] for field in RECORD_SCHEMA}
    return pa.table({name: pa.array(values, RECORD_SCHEMA.field(name).type) for name, values in columns.items()},
                    schema=RECORD_SCHEMA)


def ok(image_id: str, sha: str) -> RowResult:
    return RowResult(image_id=image_id, status="ok", sha256=sha, bytes=10, width=4, height=3,
                     storage_key=f"images/{sha[:2]}/{sha}.jpg")


def test_results_replace_harvest_columns_and_leave_other_rows_alone() -> None:
    table = manifest([
        {"image_id": "a", "url": "http://x/a", "status": "pending"},
        {"image_id": "b", "url": "http://x/b", "status": "pending", "species": "Amanita muscaria"},
        {"image_id": "c", "url": "http://x/c", "status": "ok", "sha256": "cc", "bytes": 7, "storage_key": "k"},
    ])
    results = results_table([ok("b", "bb"), RowResult(image_id="a", status="failed", error="http-404")],
                            RECORD_SCHEMA)
    merged = merge_results(table, results).to_pylist()
    assert [row["status"] for row in merged] == ["failed", "ok", "ok"]
    assert merged[0]["error"] == "http-404" and merged[0]["sha256"] is None
    assert merged[1]["sha256"] == "bb" and merged[1]["width"] == 4 and merged[1]["species"] == "Amanita muscaria"
    assert merged[2]["storage_key"] == "k" and merged[2]["bytes"] == 7  # no result: as it was
    assert merge_results(table, results).schema == RECORD_SCHEMA


def test_later_copies_of_the_same_bytes_point_at_the_first_stored_row() -> None:
    table = manifest([{"image_id": i, "url": f"http://x/{i}", "status": "pending", "duplicate_of": "stale"}
                      for i in ("a", "b", "c", "d", "e")])
    results = results_table([ok("c", "s1"), ok("a", "s1"), ok("b", "s2"), ok("e", "s1"),
                             RowResult(image_id="d", status="failed", error="x", sha256="s1")], RECORD_SCHEMA)
    merged = merge_results(table, results)
    assert merged.column("duplicate_of").to_pylist() == [None, None, "a", None, "a"]
    stats = harvest_stats(merged)
    assert stats == {"ok": 4, "failed": 1, "skipped": 0, "pending": 0, "duplicates": 2}


def test_no_results_clears_nothing_but_stale_duplicate_marks() -> None:
    table = manifest([{"image_id": "a", "url": "http://x/a", "status": "ok", "sha256": "s", "duplicate_of": "z"},
                      {"image_id": "b", "url": "http://x/b", "status": "skipped", "error": "class-cap: 1"}])
    merged = merge_results(table, results_table([], RECORD_SCHEMA))
    assert merged.column("status").to_pylist() == ["ok", "skipped"]
    assert merged.column("error").to_pylist() == [None, "class-cap: 1"]
    assert merged.column("duplicate_of").to_pylist() == [None, None]
