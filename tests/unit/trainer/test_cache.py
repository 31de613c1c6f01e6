"""The local cache: LRU eviction under a byte bound, pins, and validation of what a restarted worker finds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.trainer.cache import CacheIntegrityError, CacheTooSmall, ImageCache
from shared.storage import ObjectStore

pytestmark = pytest.mark.unit


def put(store: ObjectStore, count: int, size: int = 100) -> list[str]:
    keys = [f"images/{index:03d}.jpg" for index in range(count)]
    for index, key in enumerate(keys):
        store.put_bytes(key, bytes([index]) * size)
    return keys


def test_evicts_the_least_recently_used_and_never_exceeds_the_bound(dir_store: ObjectStore, tmp_path: Path) -> None:
    keys = put(dir_store, 6)
    cache = ImageCache(dir_store, tmp_path / "work", max_bytes=300)
    for key in keys[:3]:
        cache.fetch(key)
    cache.fetch(keys[0])  # used again: now keys[1] is the least recently used
    for key in keys[3:]:
        cache.fetch(key)
        assert cache.total_bytes <= 300
        assert sum(p.stat().st_size for p in cache.root.rglob("*") if p.is_file()) <= 300
    assert list(cache.entries()) == keys[3:]
    cache.fetch(keys[0])
    assert keys[3] not in cache.entries() and keys[0] in cache.entries()
    assert cache.path(keys[0]).read_bytes() == bytes([0]) * 100


def test_hits_do_not_download_again_and_pinned_entries_stay(
        dir_store: ObjectStore, dir_bucket: Any, tmp_path: Path) -> None:
    keys = put(dir_store, 4)
    cache = ImageCache(dir_store, tmp_path / "work", max_bytes=300)
    paths = cache.fill(keys[:3])
    assert all(paths[key].exists() for key in keys[:3])
    before = len(dir_bucket.gets)
    cache.fill(keys[:3])
    assert len(dir_bucket.gets) == before
    with pytest.raises(CacheTooSmall):
        cache.fetch(keys[3])  # everything cached is pinned by the fill: nothing may go
    cache.release()
    cache.fetch(keys[3])
    assert cache.total_bytes <= 300


def test_a_restart_reuses_entries_and_drops_a_truncated_file(
        dir_store: ObjectStore, dir_bucket: Any, tmp_path: Path) -> None:
    keys = put(dir_store, 3)
    cache = ImageCache(dir_store, tmp_path / "work", max_bytes=10_000)
    cache.fill(keys)
    cache.close()
    with cache.path(keys[1]).open("r+b") as handle:  # a crash or a full disk left it short
        handle.truncate(40)
    restarted = ImageCache(dir_store, tmp_path / "work", max_bytes=10_000)
    assert set(restarted.entries()) == {keys[0], keys[2]}
    before = len(dir_bucket.gets)
    paths = restarted.fill(keys)
    assert dir_bucket.gets[before:] == [keys[1]]  # only the damaged one is fetched again
    assert paths[keys[1]].read_bytes() == bytes([1]) * 100
    assert restarted.total_bytes == 300


def test_a_download_of_the_wrong_size_or_hash_is_refused(dir_store: ObjectStore, tmp_path: Path) -> None:
    keys = put(dir_store, 1)
    cache = ImageCache(dir_store, tmp_path / "work")
    with pytest.raises(CacheIntegrityError):
        cache.fetch(keys[0], size=99)
    with pytest.raises(CacheIntegrityError):
        cache.fetch(keys[0], sha256="0" * 64)
    assert keys[0] not in cache.entries() and not cache.path(keys[0]).exists()
    assert not [p for p in cache.root.rglob("*") if p.is_file()]
