"""Column-wise helpers for manifests of millions of rows: 64-bit keys for string ids, joins by sorted keys.

Hashing and joining 2.3 million Python-free strings with Arrow's hash kernels costs seconds and
hundreds of megabytes; sha256 digests and image_ids are fixed-width hex digests, so a 64-bit key mixed
from their bytes (gathered straight from the Arrow buffers) identifies them, and numpy sorts do the joins.
Keys are exact for strings up to 32 bytes; longer strings are keyed by their length and their first and
last 16 bytes (right for digests and the project's ids, not for arbitrary text such as URLs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

T = TypeVar("T")
BATCH_ROWS = 256_000
SMALL_INDEX = 1 << 16
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SPREAD = np.arange(16, dtype=np.int64)


def _mix(h: np.ndarray, word: np.ndarray) -> np.ndarray:
    h = (h ^ word) * _MIX
    return h ^ (h >> np.uint64(29))


def string_keys(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(uint64 key, valid) per value; null values get key 0 and valid False."""
    if isinstance(array, pa.ChunkedArray):
        parts = [string_keys(chunk) for chunk in array.chunks]
        if not parts:
            return np.zeros(0, np.uint64), np.zeros(0, bool)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.large_string())
    valid = np.asarray(pc.is_valid(array).to_numpy(zero_copy_only=False), dtype=bool)
    keys = _fixed_width_keys(array, valid)
    if keys is None:
        keys = _variable_width_keys(array)
    keys[~valid] = 0
    return keys, valid


def _buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    n = len(array)
    buffers = array.buffers()
    width = np.int64 if pa.types.is_large_string(array.type) else np.int32
    offsets = np.frombuffer(buffers[1], dtype=width)[array.offset:array.offset + n + 1].astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None and buffers[2].size else \
        np.zeros(1, np.uint8)
    return offsets, data


def _fixed_width_keys(array: pa.Array, valid: np.ndarray) -> np.ndarray | None:
    """Fast path for digests: every value has the same length, so the bytes reshape to a matrix (no gather)."""
    lengths = pc.binary_length(array)
    width = pc.min_max(lengths)
    low, high = width["min"].as_py(), width["max"].as_py()
    if low is None or low != high or low < 16:
        return None
    if not valid.all():  # nulls have no bytes: give them a placeholder of the same width
        array = pc.fill_null(array, "0" * low)
    offsets, data = _buffers(array)
    n = len(array)
    matrix = data[offsets[0]:offsets[0] + n * low].reshape(n, low)
    words = np.ascontiguousarray(np.concatenate([matrix[:, :16], matrix[:, -16:]], axis=1)).view(np.uint64)
    h = np.full(n, np.uint64((low * int(_MIX)) & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    for column in range(words.shape[1]):
        h = _mix(h, words[:, column])
    return h


def _variable_width_keys(array: pa.Array) -> np.ndarray:
    offsets, data = _buffers(array)
    n = len(array)
    keys = np.zeros(n, dtype=np.uint64)
    for start in range(0, n, BATCH_ROWS):  # bounded temporary arrays
        stop = min(n, start + BATCH_ROWS)
        begin, end = offsets[start:stop], offsets[start + 1:stop + 1]
        length = end - begin
        head_index = begin[:, None] + _SPREAD
        head = np.where(_SPREAD < length[:, None], data[np.minimum(head_index, len(data) - 1)], 0)
        tail_index = end[:, None] - 16 + _SPREAD
        tail = np.where(tail_index >= begin[:, None], data[np.clip(tail_index, 0, len(data) - 1)], 0)
        words = np.ascontiguousarray(np.concatenate([head, tail], axis=1).astype(np.uint8)).view(np.uint64)
        with np.errstate(over="ignore"):
            h = length.astype(np.uint64) * _MIX
        for column in range(words.shape[1]):
            h = _mix(h, words[:, column])
        keys[start:stop] = h
    return keys


class KeyIndex:
    """Sorted keys of a lookup table (e.g. the score cache or the labels) and their row positions."""

    def __init__(self, keys: np.ndarray, valid: np.ndarray | None = None) -> None:
        positions = np.arange(len(keys)) if valid is None else np.flatnonzero(valid)
        chosen = keys[positions]
        if len(chosen) > 1 and not bool(np.all(chosen[1:] >= chosen[:-1])):  # files are stored sorted already
            order = np.argsort(chosen, kind="stable")
            chosen, positions = chosen[order], positions[order]
        self.keys = chosen
        self.positions = positions

    def find(self, keys: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Row position in the lookup table for each key, -1 where absent (or not valid)."""
        if len(self.keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        if len(self.keys) < SMALL_INDEX:  # fits in cache: random binary searches are cheap
            at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
            return np.where(valid & (self.keys[at] == keys), self.positions[at], -1)
        # Probes in key order make the binary searches walk memory in order (several times faster).
        rows, top = sorted_rows(keys)
        shift = _index_bits(len(keys))
        lookup_top = self.keys >> shift  # still sorted
        at = np.searchsorted(lookup_top, top)
        result = np.full(len(keys), -1, dtype=np.int64)
        # The sort saw the top bits only: confirm on the full key (and the neighbour, for a top-bits tie).
        for offset in (0, 1):
            here = np.minimum(at + offset, len(self.keys) - 1)
            hit = (self.keys[here] == keys[rows]) & (result[rows] < 0)
            result[rows[hit]] = self.positions[here[hit]]
        return np.where(valid, result, -1)


def _index_bits(n: int) -> np.uint64:
    return np.uint64(max(1, int(n - 1).bit_length()))


def sorted_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers in (key, row) order and their keys' top bits, by one plain sort of packed values
    (``np.sort`` on uint64 is several times faster than ``argsort``): the low bits carry the row number."""
    shift = _index_bits(len(keys))
    packed = np.sort(((keys >> shift) << shift) | np.arange(len(keys), dtype=np.uint64))
    rows = (packed & ((np.uint64(1) << shift) - np.uint64(1))).astype(np.int64)
    return rows, packed >> shift


def first_occurrence_duplicates(keys: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """True for every valid row whose key appeared on an earlier row."""
    selected = np.flatnonzero(valid)
    if len(selected) == 0:
        return np.zeros(len(keys), dtype=bool)
    order, _ = sorted_rows(keys[selected])  # equal keys: earliest row first
    full = keys[selected][order]
    repeat = np.zeros(len(order), dtype=bool)
    repeat[1:] = full[1:] == full[:-1]
    duplicate = np.zeros(len(keys), dtype=bool)
    duplicate[selected[order[repeat]]] = True
    return duplicate


def batches(source: pa.Table | Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Record batches of a table in memory or of a Parquet file (streamed: memory stays bounded)."""
    if isinstance(source, pa.Table):
        yield from source.select(columns).to_batches(max_chunksize=BATCH_ROWS)
        return
    parquet = pq.ParquetFile(source)
    yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns, use_threads=True)


def map_row_groups(source: pa.Table | Path, columns: list[str], function: Callable[[pa.RecordBatch], T],
                   workers: int = 2) -> list[T]:
    """``function`` over the row groups of a Parquet file (decoding and numpy work overlap in threads)
    or over the batches of an in-memory table; results in order."""
    if isinstance(source, pa.Table):
        return [function(batch) for batch in batches(source, columns)]
    groups = pq.ParquetFile(source).num_row_groups

    def one(group: int) -> T:
        table = pq.ParquetFile(source).read_row_group(group, columns=columns, use_threads=False)
        return function(table.combine_chunks().to_batches()[0] if table.num_rows else
                        pa.RecordBatch.from_pylist([], schema=table.schema))

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(groups)))
