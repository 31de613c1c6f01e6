"""The curation decision (pure): reasons, their order, labels, duplicates, and reversibility."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from fixtureweb.species import SpeciesCatalog
from services.curator.analysis import analyses_to_table, analyze_bytes
from services.curator.curation import CurationRules, curate_table
from services.curator.duplicates import duplicate_groups
from shared.curation import Blacklist, BlacklistEntry
from shared.manifests import RECORD_SCHEMA, conform
from tests.unit.curator.conftest import PlumbingGate

pytestmark = pytest.mark.unit

NO_LABELS = pa.table({"image_id": pa.array([], pa.string()), "human_irrelevant": pa.array([], pa.bool_())})


def jpeg(image: Image.Image, quality: int = 85) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def test_duplicate_groups_exact_near_and_distinct(plumbing_gate: PlumbingGate) -> None:
    catalog = SpeciesCatalog(4, 0)
    photo = catalog.render(0, 1, 200)
    other = catalog.render(1, 2, 200)
    variants = [jpeg(photo), jpeg(photo, 50), jpeg(photo.resize((150, 150))), jpeg(other), jpeg(photo)]
    analyses = [analyze_bytes(f"i{n}", f"sha{n}", data, plumbing_gate) for n, data in enumerate(variants)]
    hashes = np.array([a.phash for a in analyses], dtype=np.int64)
    first = duplicate_groups([f"sha{n}" for n in range(4)] + ["sha0"], hashes, distance=4)
    assert first.tolist() == [-1, 0, 0, -1, 0]
    assert duplicate_groups(["a", "b"], hashes[[0, 3]], distance=0).tolist() == [-1, -1]


def test_broken_bytes_are_reported_not_raised(plumbing_gate: PlumbingGate) -> None:
    analysis = analyze_bytes("x", None, b"\xff\xd8\xff\xe0 definitely not a jpeg", plumbing_gate)
    assert analysis.broken and analysis.error


def rows(n: int) -> pa.Table:
    catalog = SpeciesCatalog(4, 0)
    data = [jpeg(catalog.render(i % 4, i, 120)) for i in range(n)]
    table = pa.table({
        "image_id": [f"i{i}" for i in range(n)], "observation_id": [f"o{i}" for i in range(n)],
        "source": ["csv"] * n, "url": [f"http://d{i % 2}.test/p/{i}.jpg" for i in range(n)],
        "domain": [f"d{i % 2}.test" for i in range(n)], "status": ["ok"] * n, "sha256": [f"s{i}" for i in range(n)],
        "storage_key": [f"images/{i}.jpg" for i in range(n)],
    })
    return conform(table), data


def test_reasons_in_order_and_labels_override(plumbing_gate: PlumbingGate) -> None:
    table, data = rows(8)
    table = table.set_column(RECORD_SCHEMA.get_field_index("status"), "status",
                             pa.array(["ok"] * 7 + ["failed"]))
    analyses = [analyze_bytes(f"i{i}", f"s{i}", d, plumbing_gate) for i, d in enumerate(data)]
    analyses[2] = analyze_bytes("i2", "s2", b"broken", plumbing_gate)
    analyses[7] = analyze_bytes("i7", "s7", b"", plumbing_gate)  # not harvested: never analysed in practice
    aligned = analyses_to_table(analyses)
    scores = np.array([0.1, 0.1, np.nan, 0.9, 0.9, 0.1, 0.1, np.nan])
    labels = pa.table({"image_id": ["i4", "i5"], "human_irrelevant": [False, True]})
    entry = BlacklistEntry(entry="d0.test/p/0", domain="d0.test", path_prefix="/p/0", reason="x", added_by="t",
                           added_at=datetime.now(UTC))
    curated, stats = curate_table(table, aligned, scores, Blacklist(entries=[entry]), labels,
                                  CurationRules(min_side=130))
    reasons = curated.column("excluded_reason").to_pylist()
    # i0 blacklisted (path prefix), i1 fine but 120 px < 130: too small wins over nothing.
    assert reasons[0] == "blacklisted"
    assert reasons[2] == "broken" and reasons[7] == "not_harvested"
    assert reasons[3] == "too_small"  # too small comes before irrelevant
    curated, stats = curate_table(table, aligned, scores, Blacklist(entries=[entry]), labels, CurationRules())
    reasons = curated.column("excluded_reason").to_pylist()
    assert reasons == ["blacklisted", None, "broken", "irrelevant", None, "irrelevant", None, "not_harvested"]
    assert stats["labels_used"] == 2 and stats["included"] == 3
    assert curated.column("irrelevant_score").to_pylist()[3] == pytest.approx(0.9)
    assert curated.column("width").to_pylist()[0] == 120
    assert curated.num_rows == table.num_rows and conform(curated).equals(curated)

    # Reversible: without the entry the same rows come back.
    again, _ = curate_table(table, aligned, scores, Blacklist(), labels, CurationRules())
    assert again.column("excluded_reason").to_pylist()[0] is None


def test_near_duplicates_found_by_banding_among_many() -> None:
    rng = np.random.default_rng(1)
    hashes = rng.integers(-(2**63), 2**63 - 1, 5000, dtype=np.int64)
    flips = [np.int64(sum(1 << int(bit) for bit in rng.choice(63, size=4, replace=False))) for _ in range(50)]
    hashes[4950:] = hashes[:50] ^ np.array(flips, dtype=np.int64)  # 4 bits away from rows 0..49
    first = duplicate_groups([None] * 5000, hashes, distance=4)
    assert first[4950:].tolist() == list(range(50))
    assert (first[:4950] == -1).all()
    assert (duplicate_groups([None] * 5000, hashes, distance=3)[4950:] == -1).all()


def test_analysis_of_what_harvests_really_contain(plumbing_gate: PlumbingGate) -> None:
    from fixtureweb import encoding

    photo = SpeciesCatalog(4, 0).render(2, 5, 200)
    good = jpeg(photo)
    for data in (encoding.cmyk_jpeg(photo), encoding.grayscale_jpeg(photo), encoding.exif_rotated_jpeg(photo),
                 encoding.encode(photo, encoding.ImageFormat.PNG), encoding.encode(photo, encoding.ImageFormat.WEBP)):
        analysis = analyze_bytes("x", None, data, plumbing_gate)
        assert not analysis.broken and analysis.statistics is not None and analysis.stats is not None
        assert analysis.fungus_probability == 0.5 and analysis.embedding is not None
        assert analysis.gate == "plumbing-gate"
    for data in (encoding.truncated(good), encoding.bomb_png(), b"<html>not an image</html>", b""):
        analysis = analyze_bytes("x", None, data, plumbing_gate)
        assert analysis.broken and analysis.error, data[:20]
