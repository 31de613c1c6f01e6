"""A local disk cache of image bytes from object storage (under settings.work_dir).

Training reads every image once per epoch; fetching it from S3 each time would make the network the
bottleneck. The cache fills in parallel before the first epoch and survives worker restarts, so a resumed
job (or the next job on the same manifest) starts at disk speed. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared.storage import ObjectStore, validate_key

logger = logging.getLogger(__name__)


class ImageCache:
    def __init__(self, store: ObjectStore, root: Path) -> None:
        self.store = store
        self.root = root / "images-cache" / store.bucket

    def path(self, key: str) -> Path:
        return self.root / validate_key(key)  # validated keys have no '..' segments: no escape from root

    def fetch(self, key: str) -> Path:
        path = self.path(key)
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        os.close(fd)
        try:
            self.store.get_file(key, Path(tmp))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def fill(self, keys: Iterable[str], threads: int = 8,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Path]:
        """Fetch every missing key in parallel (8 threads: the minio client pools 10 connections)."""
        keys = list(dict.fromkeys(keys))
        missing = [key for key in keys if not self.path(key).exists()]
        if missing:
            logger.info("image cache: fetching %d of %d images", len(missing), len(keys))
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for done, _ in enumerate(pool.map(self.fetch, missing), start=1):
                    if progress and (done % 200 == 0 or done == len(missing)):
                        progress(done, len(missing))
        return {key: self.path(key) for key in keys}
