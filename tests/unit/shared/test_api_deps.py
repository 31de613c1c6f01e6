"""The shared FastAPI dependencies: one store per settings, its bucket made before anyone uses it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from shared import api
from shared.settings import Settings

pytestmark = pytest.mark.unit


class SlowBucketStore:
    """Stands in for ObjectStore: creating the bucket takes a while, as on a busy S3 server."""

    made = 0

    def __init__(self) -> None:
        self.bucket_ready = False
        SlowBucketStore.made += 1

    def ensure_bucket(self) -> None:
        time.sleep(0.2)
        self.bucket_ready = True


def test_concurrent_first_requests_wait_for_the_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    SlowBucketStore.made = 0
    monkeypatch.setattr(api.ObjectStore, "from_settings", classmethod(lambda cls, settings: SlowBucketStore()))
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(stores={})))
    settings = Settings(s3_bucket="race-test")
    start = threading.Barrier(8)

    def first_request(_: int) -> tuple[SlowBucketStore, bool]:
        start.wait()
        store: SlowBucketStore = api.get_store(request, settings)  # type: ignore[arg-type, assignment]
        return store, store.bucket_ready  # as the request handler would find it

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(first_request, range(8)))
    assert all(ready for _, ready in got)  # nobody got a store before its bucket existed
    assert len({id(store) for store, _ in got}) == 1 and SlowBucketStore.made == 1


def test_a_failed_bucket_check_is_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    class Unreachable(SlowBucketStore):
        def ensure_bucket(self) -> None:
            raise ConnectionError("S3 is down")

    monkeypatch.setattr(api.ObjectStore, "from_settings", classmethod(lambda cls, settings: Unreachable()))
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(stores={})))
    with pytest.raises(ConnectionError):
        api.get_store(request, Settings(s3_bucket="down-test"))  # type: ignore[arg-type]
    assert request.app.state.stores == {}  # the next request tries again
