"""Exact and near duplicates: the same photo under another URL, or re-encoded / resized.

Exact: equal sha256. Near: 64-bit perceptual hashes within ``distance`` bits. Candidate pairs come
from banding (split the hash into distance+1 bands: two hashes within ``distance`` bits agree on at
least one band), so the work grows with the number of similar pairs, not with n².
"""

from __future__ import annotations

import numpy as np


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = int(self.parent[root])
        while self.parent[i] != root:
            self.parent[i], i = root, int(self.parent[i])
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the earlier row stays the canonical one
            self.parent[max(ra, rb)] = min(ra, rb)


def duplicate_groups(sha256: list[str | None], phash: np.ndarray, distance: int) -> np.ndarray:
    """For each row, the index of the earliest row of its duplicate group, or -1 if it is the first.
    Pass only rows that have a perceptual hash (``phash``: int64 per row)."""
    n = len(sha256)
    uf = _UnionFind(n)
    first_by_sha: dict[str, int] = {}
    for i, digest in enumerate(sha256):
        if digest is None:
            continue
        if digest in first_by_sha:
            uf.union(first_by_sha[digest], i)
        else:
            first_by_sha[digest] = i
    hashes = phash.astype(np.int64).view(np.uint64)
    bands = distance + 1
    width = 64 // bands
    for band in range(bands):
        shift = np.uint64(band * width)
        bits = 64 - band * width if band == bands - 1 else width
        mask = np.uint64((1 << bits) - 1)
        keys = (hashes >> shift) & mask
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_keys)) + 1])
        ends = np.concatenate([starts[1:], [len(order)]])
        for start, end in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=True):  # shared bands only
            group = order[start:end]
            for chunk in range(0, len(group), 1024):  # all pairs of a band group at once, in bounded blocks
                rows = group[chunk:chunk + 1024]
                near = np.bitwise_count(hashes[rows][:, None] ^ hashes[group][None, :]) <= distance
                near &= np.arange(chunk, chunk + len(rows))[:, None] < np.arange(len(group))[None, :]  # each pair once
                for a, b in zip(*np.nonzero(near), strict=True):
                    uf.union(int(rows[a]), int(group[b]))
    roots = np.array([uf.find(i) for i in range(n)], dtype=np.int64)
    return np.where(roots == np.arange(n), -1, roots)
