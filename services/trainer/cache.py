"""A bounded local disk cache of objects from storage (images or TFRecord shards) under settings.work_dir.

Training reads every image once per epoch; fetching it from S3 each time would make the network the
bottleneck. The cache fills in parallel and survives worker restarts, so a resumed job (or the next job on the
same manifest) starts at disk speed. Writes are atomic (temp file + rename).

Bound: at most ``max_bytes`` on disk; a new entry evicts the least recently used ones first. Entries the current
job still needs (the images of its plan, pinned by :meth:`ImageCache.fill`) are never evicted; if they alone
would exceed the bound the fill fails with :class:`CacheTooSmall` rather than fill the disk (stream shards
instead, or raise the bound).

Restart: an index (SQLite, beside the cache directory) records each entry's size, SHA-256 and last use. Opening
the cache checks every entry's size on disk against it and drops what does not match (a file truncated by a
crash or a full disk), along with leftover temporary files and files the index does not know. A download whose
caller knows the object's size or SHA-256 (shards: from their index) is checked before it enters the cache.
Pins are per process: two workers sharing one work directory each keep their own plan, not each other's.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared.storage import ObjectStore, validate_key

logger = logging.getLogger(__name__)

PART_PREFIX = ".part-"
UNKNOWN_FILE_GRACE_SECONDS = 600


class CacheTooSmall(RuntimeError):
    """The objects one job needs at once do not fit in the cache's bound."""


class CacheIntegrityError(RuntimeError):
    """A downloaded object does not have the size or SHA-256 its caller expected."""


class ImageCache:
    def __init__(self, store: ObjectStore, root: Path, max_bytes: int | None = None) -> None:
        self.store = store
        self.root = root / "images-cache" / store.bucket
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pinned: set[str] = set()
        self._db = sqlite3.connect(self.root.parent / f"{store.bucket}.index.sqlite", check_same_thread=False,
                                   timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, size INTEGER NOT NULL, "
                         "sha256 TEXT NOT NULL, used INTEGER NOT NULL)")
        self.validate()

    # --- the index ----------------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        return self.root / validate_key(key)  # validated keys have no '..' segments: no escape from root

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0])

    def entries(self) -> dict[str, int]:
        """key -> size, least recently used first."""
        with self._lock:
            return dict(self._db.execute("SELECT key, size FROM entries ORDER BY used, key").fetchall())

    def validate(self) -> int:
        """Drop entries whose file is missing or has the wrong size, and files the index does not know."""
        with self._lock:
            rows = self._db.execute("SELECT key, size FROM entries").fetchall()
            known = {self.root / key for key, _ in rows}
            dropped = 0
            for key, size in rows:
                path = self.root / key
                try:
                    actual = path.stat().st_size
                except FileNotFoundError:
                    actual = -1
                if actual != size:
                    logger.warning("image cache: %s has %d bytes, expected %d; dropped", key, actual, size)
                    path.unlink(missing_ok=True)
                    self._db.execute("DELETE FROM entries WHERE key = ?", (key,))
                    dropped += 1
            settled = time.time() - UNKNOWN_FILE_GRACE_SECONDS  # younger ones may be another process's download
            for path in [p for p in self.root.rglob("*") if p.is_file() and p not in known]:
                # temporary files of a killed download, or files of a cache without an index: re-fetched on use
                if path.stat().st_mtime < settled:
                    path.unlink(missing_ok=True)
                    dropped += 1
        return dropped

    def _touch(self, keys: Iterable[str]) -> None:
        now = time.time_ns()
        with self._lock:
            self._db.executemany("UPDATE entries SET used = ? WHERE key = ?", [(now, key) for key in keys])

    def _cached(self, key: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT size FROM entries WHERE key = ?", (key,)).fetchone()
        return row is not None and self.path(key).exists()

    # --- fetching -------------------------------------------------------------------------------------
    def fetch(self, key: str, size: int | None = None, sha256: str | None = None) -> Path:
        """The local file of one object, downloaded unless cached; checked against size/SHA-256 when given."""
        path = self.path(key)
        if self._cached(key):
            self._touch([key])
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=PART_PREFIX)
        os.close(fd)
        try:
            self.store.get_file(key, Path(tmp))
            actual_size, digest = size_and_sha256(Path(tmp))
            if (size is not None and actual_size != size) or (sha256 is not None and digest != sha256):
                raise CacheIntegrityError(f"{key}: got {actual_size} bytes (sha256 {digest[:12]}), expected "
                                          f"{size} bytes (sha256 {(sha256 or '?')[:12]})")
            with self._lock:  # room, rename and record in one step: parallel fetches cannot overshoot together
                self._make_room(actual_size, keep=key)
                os.replace(tmp, path)
                self._db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)",
                                 (key, actual_size, digest, time.time_ns()))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def _make_room(self, size: int, keep: str) -> None:
        """Evict least recently used, unpinned entries until ``size`` more bytes fit the bound (lock held)."""
        if self.max_bytes is None:
            return
        if size > self.max_bytes:
            raise CacheTooSmall(f"{keep} has {size} bytes; the cache holds at most {self.max_bytes}")
        total = int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM entries WHERE key != ?",
                                     (keep,)).fetchone()[0])
        if total + size <= self.max_bytes:
            return
        for key, entry_size in self._db.execute("SELECT key, size FROM entries WHERE key != ? ORDER BY used, key",
                                                (keep,)).fetchall():
            if key in self._pinned:
                continue
            (self.root / key).unlink(missing_ok=True)
            self._db.execute("DELETE FROM entries WHERE key = ?", (key,))
            total -= entry_size
            logger.debug("image cache: evicted %s (%d bytes)", key, entry_size)
            if total + size <= self.max_bytes:
                return
        raise CacheTooSmall(
            f"the cache bound ({self.max_bytes} bytes) is too small for the objects this job needs at once; "
            "raise SPOREPRINT_TRAINER_CACHE_MAX_BYTES or train from shards (spec input: 'shards')")

    def fill(self, keys: Iterable[str], threads: int = 8,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Path]:
        """Fetch every missing key in parallel (8 threads: the minio client pools 10 connections).

        The keys stay pinned (never evicted by this process) until :meth:`release`: a job reads them every epoch.
        """
        keys = list(dict.fromkeys(keys))
        with self._lock:
            self._pinned.update(keys)
        missing = [key for key in keys if not self._cached(key)]
        self._touch(keys)
        if missing:
            logger.info("image cache: fetching %d of %d images", len(missing), len(keys))
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for done, _ in enumerate(pool.map(self.fetch, missing), start=1):
                    if progress and (done % 200 == 0 or done == len(missing)):
                        progress(done, len(missing))
        return {key: self.path(key) for key in keys}

    def release(self, keys: Iterable[str] | None = None) -> None:
        """Unpin keys (all when None): they may be evicted again."""
        with self._lock:
            if keys is None:
                self._pinned.clear()
            else:
                self._pinned.difference_update(keys)

    def close(self) -> None:
        self._db.close()


def size_and_sha256(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
