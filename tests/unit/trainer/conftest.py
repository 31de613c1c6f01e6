"""A bucket in a local directory with the ObjectStore calls the cache and the packer use (unit tests run no
servers; tests/e2e/trainer/test_shards.py runs the same code against the real S3 server)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, cast

import pytest

from shared.storage import ObjectNotFound, ObjectStore


class DirectoryBucket:
    def __init__(self, root: Path, bucket: str = "unit") -> None:
        self.root = root
        self.bucket = bucket
        self.gets: list[str] = []

    def _path(self, key: str) -> Path:
        return self.root / key

    def put_bytes(self, key: str, data: bytes, content_type: str = "") -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return key

    def get_bytes(self, key: str) -> bytes:
        self.gets.append(key)
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def put_json(self, key: str, value: Any) -> str:
        return self.put_bytes(key, json.dumps(value).encode())

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def put_file(self, key: str, path: Path, content_type: str = "") -> str:
        return self.put_bytes(key, path.read_bytes())

    def get_file(self, key: str, path: Path) -> Path:
        self.gets.append(key)
        if not self._path(key).exists():
            raise ObjectNotFound(key)
        shutil.copyfile(self._path(key), path)
        return path


@pytest.fixture
def dir_bucket(tmp_path: Path) -> DirectoryBucket:
    return DirectoryBucket(tmp_path / "bucket")


@pytest.fixture
def dir_store(dir_bucket: DirectoryBucket) -> ObjectStore:
    return cast(ObjectStore, dir_bucket)
