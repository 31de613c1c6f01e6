"""Where harvested images go: content-addressed objects, written create-only so each is stored once.

``images/<sha256[:2]>/<sha256>.jpg`` is written with ``If-None-Match: *`` through a presigned URL, over
an aiohttp session (the ``minio`` client is synchronous): a second write of the same bytes, by this
harvest after a crash or by another one, is refused by the server and counted as already stored.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import aiohttp

from shared.storage import ObjectStore, StorageError, validate_key

logger = logging.getLogger(__name__)


def image_key(sha256: str) -> str:
    return f"images/{sha256[:2]}/{sha256}.jpg"


class ImageSink:
    def __init__(self, store: ObjectStore, session: aiohttp.ClientSession, concurrency: int = 16,
                 attempts: int = 4) -> None:
        self.store = store
        self.session = session
        self.attempts = attempts
        self._slots = asyncio.Semaphore(concurrency)
        self._writes: dict[str, asyncio.Future[bool]] = {}
        self.created = 0
        self.existing = 0

    async def put(self, sha256: str, data: bytes) -> tuple[str, bool]:
        """Store ``data`` under its content key; returns (key, whether this call created it).

        Concurrent calls with the same digest share one write.
        """
        key = image_key(sha256)
        while (pending := self._writes.get(sha256)) is not None:
            try:
                await asyncio.shield(pending)
            except BaseException:
                if pending.done():
                    continue  # that write failed: try it ourselves
                raise
            return key, False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._writes[sha256] = future
        try:
            created = await self._put_once(key, data)
        except BaseException as exc:
            del self._writes[sha256]
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # marked retrieved: the waiters retry, nobody else must
            else:
                future.cancel()
            raise
        future.set_result(created)
        if created:
            self.created += 1
        else:
            self.existing += 1
        return key, created

    async def _put_once(self, key: str, data: bytes) -> bool:
        validate_key(key)
        async with self._slots:
            for attempt in range(self.attempts):
                url = self.store.client.presigned_put_object(self.store.bucket, key, expires=timedelta(minutes=10))
                try:
                    async with self.session.put(
                        url, data=data, headers={"If-None-Match": "*", "Content-Type": "image/jpeg"}
                    ) as response:
                        body = await response.read()
                        if response.status in (200, 201, 204):
                            return True
                        if response.status in (409, 412):
                            return False  # already there: the same bytes, stored before
                        if response.status < 500 and response.status != 429:
                            raise StorageError(f"PUT {key} answered {response.status}: {body[:200]!r}")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    if attempt == self.attempts - 1:
                        raise StorageError(f"PUT {key} failed: {exc}") from exc
                await asyncio.sleep(0.2 * 2**attempt)
        raise StorageError(f"PUT {key} failed after {self.attempts} attempts")
