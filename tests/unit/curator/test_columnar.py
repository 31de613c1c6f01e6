"""64-bit keys for ids and digests, and joins on them."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest

from services.curator.columnar import KeyIndex, first_occurrence_duplicates, string_keys

pytestmark = pytest.mark.unit


def digests(n: int, length: int = 64) -> list[str]:
    return [hashlib.sha256(str(i).encode()).hexdigest()[:length] for i in range(n)]


def test_equal_strings_equal_keys_across_arrays_slices_and_chunks() -> None:
    values = digests(1000) + digests(1000, 32) + ["short", "", "x" * 17, "gbif-1-0"]
    keys, valid = string_keys(pa.array(values))
    assert valid.all()
    assert len(set(keys.tolist())) == len(values)  # no collisions
    sliced, _ = string_keys(pa.array(values).slice(1000, 1004))
    assert sliced.tolist() == keys[1000:2004].tolist()
    chunked, _ = string_keys(pa.chunked_array([values[:7], values[7:]], pa.string()))
    assert chunked.tolist() == keys.tolist()
    fixed, _ = string_keys(pa.array(values[:1000]))  # the fixed-width fast path
    assert fixed.tolist() == keys[:1000].tolist()


def test_nulls_are_invalid_and_never_match() -> None:
    keys, valid = string_keys(pa.array([digests(1)[0], None, digests(2)[1]]))
    assert valid.tolist() == [True, False, True]
    index = KeyIndex(*string_keys(pa.array([digests(2)[1], "other"])))
    assert index.find(keys, valid).tolist() == [-1, -1, 0]


def test_join_and_duplicates_on_a_large_column() -> None:
    rng = np.random.default_rng(0)
    ids = digests(50_000, 32)
    lookup = [ids[i] for i in rng.permutation(50_000)[:20_000]]
    position = KeyIndex(*string_keys(pa.array(lookup))).find(*string_keys(pa.array(ids)))
    found = {ids[i]: lookup[p] for i, p in enumerate(position) if p >= 0}
    assert len(found) == 20_000 and all(k == v for k, v in found.items())
    repeated = pa.array(ids[:100] + ids[:10] + [None])
    duplicate = first_occurrence_duplicates(*string_keys(repeated))
    assert duplicate.tolist() == [False] * 100 + [True] * 10 + [False]
