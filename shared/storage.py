"""Object storage: a thin layer over the ``minio`` client (MinIO, AWS S3 and SeaweedFS alike).

All sporeprint data lives in one bucket. Keys are validated here so that no caller can
escape a prefix or smuggle control characters into a key.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import urllib3
from minio import Minio
from minio.error import S3Error

from shared.settings import Settings

logger = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MISSING = {"NoSuchKey", "NoSuchObject", "NoSuchBucket"}


class InvalidKey(ValueError):
    """A key that could escape its prefix or is not a plain object name."""


class ObjectNotFound(KeyError):
    """No object under that key."""


class StorageError(RuntimeError):
    """The storage server refused a request."""


class PreconditionFailed(StorageError):
    """A conditional write lost the race: the object changed since it was read."""


class TooMuchContention(StorageError):
    """:meth:`ObjectStore.update` lost the compare-and-set race on every attempt."""


class Keep:
    """The type of :data:`KEEP`."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = Keep()
"""Returned by an :meth:`ObjectStore.update` change: leave the object as it is."""


def validate_key(key: str) -> str:
    if not key or len(key) > 1024:
        raise InvalidKey(f"object key must be 1..1024 characters: {key!r}")
    if key.startswith("/"):
        raise InvalidKey(f"object key must not start with '/': {key!r}")
    if _CONTROL.search(key):
        raise InvalidKey(f"object key must not contain control characters: {key!r}")
    if any(part in ("..", ".") for part in key.split("/")):
        raise InvalidKey(f"object key must not contain '.' or '..' segments: {key!r}")
    if "//" in key or "\\" in key:
        raise InvalidKey(f"object key must not contain empty segments or backslashes: {key!r}")
    return key


@dataclass(frozen=True)
class Pointer:
    """A small JSON object read together with its ETag, for compare-and-set."""

    value: dict[str, Any]
    etag: str


class ObjectStore:
    """One bucket of S3-compatible storage."""

    def __init__(self, client: Minio, bucket: str, settings: Settings | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.settings = settings  # how it was made, so another process can make its own (see __reduce__)
        # kept connections per host: concurrent compare-and-set writers (one per request thread) reuse them
        self._http = urllib3.PoolManager(maxsize=16, retries=False, timeout=urllib3.Timeout(connect=5, read=30))

    @classmethod
    def from_settings(cls, settings: Settings) -> ObjectStore:
        """Static keys when the settings have them, else the AWS credential chain (instance or pod role).

        Without keys, nothing is fetched here: the first request asks the chain, and fails with
        ``shared.credentials.NoCredentials`` (a :class:`StorageError`) naming what it tried.
        """
        from shared.credentials import aws_credential_chain  # it builds on this module's StorageError

        client = Minio(
            settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=settings.s3_secure,
            region=settings.s3_region,
            credentials=None if settings.s3_access_key else aws_credential_chain(),
        )
        return cls(client, settings.s3_bucket, settings)

    def __reduce__(self) -> tuple[Any, ...]:
        """Sent to another process (pickled), a store made from settings connects anew there."""
        if self.settings is None:
            raise TypeError("only an ObjectStore made by from_settings can be sent to another process")
        return (ObjectStore.from_settings, (self.settings,))

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            try:
                self.client.make_bucket(self.bucket)
            except S3Error as exc:  # another process created it first
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
            logger.info("created bucket %s", self.bucket)

    def ping(self) -> bool:
        try:
            self.client.bucket_exists(self.bucket)
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            return False
        return True

    # bytes and JSON
    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        result = self.client.put_object(
            self.bucket, validate_key(key), io.BytesIO(data), len(data), content_type=content_type
        )
        return str(result.etag)

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self.client.get_object(self.bucket, validate_key(key))
        except S3Error as exc:
            if exc.code in _MISSING:
                raise ObjectNotFound(key) from exc
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def put_json(self, key: str, value: Any) -> str:
        return self.put_bytes(key, _dumps(value), "application/json")

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> str:
        result = self.client.fput_object(self.bucket, validate_key(key), str(path), content_type=content_type)
        return str(result.etag)

    def get_file(self, key: str, path: Path) -> Path:
        try:
            self.client.fget_object(self.bucket, validate_key(key), str(path))
        except S3Error as exc:
            if exc.code in _MISSING:
                raise ObjectNotFound(key) from exc
            raise
        return path

    def exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, validate_key(key))
        except S3Error as exc:
            if exc.code in _MISSING:
                return False
            raise
        return True

    def size(self, key: str) -> int:
        try:
            return int(self.client.stat_object(self.bucket, validate_key(key)).size or 0)
        except S3Error as exc:
            if exc.code in _MISSING:
                raise ObjectNotFound(key) from exc
            raise

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, validate_key(key))

    def list(self, prefix: str, recursive: bool = True) -> Iterator[str]:
        """Keys under a prefix, in lexical order."""
        if prefix:
            validate_key(prefix.rstrip("/") or prefix)
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=recursive):
            if obj.object_name is not None:
                yield obj.object_name

    def presigned_get_url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        return self.client.presigned_get_object(self.bucket, validate_key(key), expires=expires)

    # pointers: compare-and-set on the ETag
    def read_pointer(self, key: str) -> Pointer | None:
        try:
            response = self.client.get_object(self.bucket, validate_key(key))
        except S3Error as exc:
            if exc.code in _MISSING:
                return None
            raise
        try:
            etag = response.headers.get("ETag", "").strip('"')
            return Pointer(json.loads(response.read()), etag)
        finally:
            response.close()
            response.release_conn()

    def compare_and_set(self, key: str, value: Any, expected: Pointer | None) -> str:
        """Write ``value`` only if the object is still what ``expected`` read (``None``: absent).

        S3 conditional writes (``If-Match`` / ``If-None-Match: *``, supported by AWS S3,
        MinIO and SeaweedFS) make this atomic on the server: of two writers that read the
        same version, exactly one succeeds and the other gets :class:`PreconditionFailed`.
        The ``minio`` client cannot send these headers, so the PUT goes through a presigned
        URL (the condition headers are not part of the signature).
        """
        return self.put_if(key, _dumps(value), expected.etag if expected else None, "application/json")

    def update(self, key: str, change: Callable[[dict[str, Any] | None], dict[str, Any] | Keep],
               attempts: int = 100) -> dict[str, Any] | None:
        """Read-modify-write of the JSON object at ``key``, so that no concurrent update is lost.

        ``change`` gets the current value (``None`` when absent) and returns the new one, or :data:`KEEP` to
        leave it as it is. When another writer wins the compare-and-set, the value is read again and ``change``
        runs again (so it must not have effects beyond its return value; exceptions it raises propagate).
        Returns the value now stored (``None`` only if absent and kept). Raises :class:`TooMuchContention`
        after ``attempts`` lost races.
        """
        for attempt in range(attempts):
            pointer = self.read_pointer(key)
            current = pointer.value if pointer is not None else None
            new = change(current)
            if isinstance(new, Keep):
                return current
            try:
                self.compare_and_set(key, new, pointer)
                return new
            except PreconditionFailed:  # someone else wrote since we read: back off a little, re-read, re-apply
                time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise TooMuchContention(f"{key} changed on each of {attempts} attempts to update it; retry")

    def put_if(self, key: str, data: bytes | Path, etag: str | None, content_type: str) -> str:
        """PUT with ``If-Match: etag`` or, when ``etag`` is None, ``If-None-Match: *`` (create only).

        ``data`` may be a file path, streamed from disk (a single PUT: up to 5 GB on S3).
        """
        url = self.client.presigned_put_object(self.bucket, validate_key(key), expires=timedelta(minutes=30))
        condition = {"If-Match": f'"{etag}"'} if etag else {"If-None-Match": "*"}
        headers = {**condition, "Content-Type": content_type}
        if isinstance(data, Path):
            headers["Content-Length"] = str(data.stat().st_size)
            with open(data, "rb") as body:
                response = self._http.request("PUT", url, body=body, headers=headers, preload_content=True,
                                              timeout=urllib3.Timeout(connect=5, read=600))
        else:
            response = self._http.request("PUT", url, body=data, headers=headers)
        if response.status == 412 or (response.status == 409 and etag is None):
            raise PreconditionFailed(f"{key} changed since it was read")
        if response.status >= 300:
            raise StorageError(f"conditional PUT of {key} answered {response.status}: {response.data[:200]!r}")
        return str(response.headers.get("ETag", "")).strip('"')


def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":")).encode()
