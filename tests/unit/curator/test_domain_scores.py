"""Per-domain scores, column-wise, on hand-built tables."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from services.curator.domain_scores import DomainRules, Recommendation, domain_scores, exact_duplicates, wilson_interval
from shared.curation import Blacklist, BlacklistEntry

pytestmark = pytest.mark.unit

NO_LABELS = pa.table({"image_id": pa.array([], pa.string()), "human_irrelevant": pa.array([], pa.bool_())})


def test_wilson_interval_matches_known_values() -> None:
    low, high = wilson_interval(np.array([8, 0, 20]), np.array([10, 10, 20]), 1.96)
    assert low[0] == pytest.approx(0.4902, abs=1e-3) and high[0] == pytest.approx(0.9433, abs=1e-3)
    assert low[1] == 0.0 and high[1] == pytest.approx(0.2775, abs=1e-3)
    assert high[2] == pytest.approx(1.0) and low[2] == pytest.approx(0.8389, abs=1e-3)
    nan_low, _ = wilson_interval(np.array([0]), np.array([0]), 1.96)
    assert np.isnan(nan_low[0])


def test_exact_duplicates_marks_later_rows_only() -> None:
    assert exact_duplicates(pa.array(["a", "b", "a", None, None, "b", "a"])).tolist() == \
        [False, False, True, False, False, True, True]


def manifest(rows: list[tuple[str, str, str, float | None]]) -> pa.Table:
    """(domain, status, sha256, irrelevant_score) per row."""
    return pa.table({
        "image_id": [f"i{n}" for n in range(len(rows))],
        "domain": [r[0] for r in rows],
        "status": [r[1] for r in rows],
        "sha256": [r[2] for r in rows],
        "irrelevant_score": pa.array([r[3] for r in rows], pa.float32()),
        "duplicate_of": pa.nulls(len(rows), pa.string()),
    })


def test_recommendations_failure_rates_and_label_override() -> None:
    rows = [("sheets.test", "ok", f"s{n}", 0.9) for n in range(25)]  # all irrelevant by the filter
    rows += [("photos.test", "ok", f"p{n}", 0.1) for n in range(40)]
    rows += [("photos.test", "failed", None, None)] * 10
    rows += [("few.test", "ok", f"f{n}", 0.9) for n in range(5)]  # too few to blacklist: review
    rows += [("photos.test", "ok", "p0", 0.1)]  # an exact duplicate
    table = manifest(rows)
    scores = {s.domain: s for s in domain_scores(table, NO_LABELS, Blacklist(), DomainRules())}
    assert scores["sheets.test"].recommendation is Recommendation.blacklist
    assert scores["photos.test"].recommendation is Recommendation.keep
    assert scores["few.test"].recommendation is Recommendation.review
    photos = scores["photos.test"]
    assert (photos.images, photos.harvested, photos.failed, photos.duplicates) == (51, 41, 10, 1)
    assert photos.failure_rate == pytest.approx(10 / 51)
    assert photos.share == pytest.approx(51 / table.num_rows)
    assert [s.domain for s in scores.values()][0] == "photos.test"  # largest first

    # People say the sheets domain is fine after all: human labels override the filter.
    labels = pa.table({"image_id": [f"i{n}" for n in range(25)], "human_irrelevant": [False] * 25})
    relabelled = {s.domain: s for s in domain_scores(table, labels, Blacklist(), DomainRules())}
    assert relabelled["sheets.test"].recommendation is Recommendation.keep
    assert (relabelled["sheets.test"].human_relevant, relabelled["sheets.test"].irrelevant) == (25, 0)
    assert (relabelled["sheets.test"].filter_irrelevant, relabelled["sheets.test"].filter_irrelevant_share) == (25, 1.0)
    assert relabelled["sheets.test"].filter_wilson_low == pytest.approx(0.8668, abs=1e-3)
    assert relabelled["sheets.test"].wilson_high == pytest.approx(0.1332, abs=1e-3)


def test_cached_scores_fill_a_harvest_version_and_rules_are_configurable() -> None:
    table = manifest([("sheets.test", "ok", f"s{n}", None) for n in range(25)])
    assert domain_scores(table, NO_LABELS, Blacklist(), DomainRules())[0].scored == 0
    cache = pa.table({"image_id": [f"i{n}" for n in range(25)], "irrelevant_score": pa.array([0.8] * 25)})
    scored = domain_scores(table, NO_LABELS, Blacklist(), DomainRules(), cache)[0]
    assert (scored.scored, scored.irrelevant, scored.recommendation) == (25, 25, Recommendation.blacklist)
    strict = domain_scores(table, NO_LABELS, Blacklist(), DomainRules(min_scored=30), cache)[0]
    assert strict.recommendation is Recommendation.review
    lenient = domain_scores(table, NO_LABELS, Blacklist(), DomainRules(irrelevant_threshold=0.9), cache)[0]
    assert lenient.recommendation is Recommendation.keep


def test_blacklisted_domain_is_shown_with_its_entry() -> None:
    entry = BlacklistEntry(entry="museum.test", domain="museum.test", reason="x", added_by="t",
                           added_at=datetime.now(UTC))
    path_only = BlacklistEntry(entry="photos.test/scans/", domain="photos.test", path_prefix="/scans/", reason="x",
                               added_by="t", added_at=datetime.now(UTC))
    table = manifest([("img.museum.test", "ok", "a", 0.1), ("photos.test", "ok", "b", 0.1)])
    scores = {s.domain: s for s in domain_scores(table, NO_LABELS, Blacklist(entries=[entry, path_only]),
                                                 DomainRules())}
    assert scores["img.museum.test"].blacklisted == "museum.test"
    assert scores["photos.test"].blacklisted is None  # only part of it is listed
