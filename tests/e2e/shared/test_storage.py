"""ObjectStore against the real S3 server (SeaweedFS), including compare-and-set under contention."""

from concurrent.futures import ThreadPoolExecutor
from uuid import uuid4

import httpx
import pytest

from shared.storage import KEEP, InvalidKey, ObjectNotFound, ObjectStore, PreconditionFailed, TooMuchContention
from tests.conftest import make_settings

pytestmark = pytest.mark.e2e


def test_bytes_json_list_and_delete(store: ObjectStore) -> None:
    store.put_bytes("images/ab/1.jpg", b"\xff\xd8jpeg")
    store.put_json("curation/blacklist.json", {"entries": ["mycoportal.org"]})
    assert store.get_bytes("images/ab/1.jpg") == b"\xff\xd8jpeg"
    assert store.get_json("curation/blacklist.json") == {"entries": ["mycoportal.org"]}
    assert store.exists("images/ab/1.jpg") and not store.exists("images/ab/2.jpg")
    assert list(store.list("images/")) == ["images/ab/1.jpg"]
    store.delete("images/ab/1.jpg")
    with pytest.raises(ObjectNotFound):
        store.get_bytes("images/ab/1.jpg")


def test_presigned_url_serves_the_object(store: ObjectStore) -> None:
    store.put_bytes("images/x.jpg", b"photo-bytes", "image/jpeg")
    response = httpx.get(store.presigned_get_url("images/x.jpg"))
    assert response.status_code == 200 and response.content == b"photo-bytes"


def test_invalid_keys_never_reach_the_server(store: ObjectStore) -> None:
    with pytest.raises(InvalidKey):
        store.put_bytes("../outside", b"x")
    with pytest.raises(InvalidKey):
        store.get_bytes("/images/x.jpg")


def test_pointer_compare_and_set(store: ObjectStore) -> None:
    assert store.read_pointer("models/promoted.json") is None
    store.compare_and_set("models/promoted.json", {"model_id": "a"}, None)
    with pytest.raises(PreconditionFailed):  # create-only: it exists now
        store.compare_and_set("models/promoted.json", {"model_id": "x"}, None)
    first = store.read_pointer("models/promoted.json")
    assert first is not None and first.value == {"model_id": "a"}
    store.compare_and_set("models/promoted.json", {"model_id": "b"}, first)
    with pytest.raises(PreconditionFailed):  # stale read
        store.compare_and_set("models/promoted.json", {"model_id": "c"}, first)
    final = store.read_pointer("models/promoted.json")
    assert final is not None and final.value == {"model_id": "b"}


def test_concurrent_increments_lose_no_update(store: ObjectStore) -> None:
    key = "curation/counter.json"
    store.compare_and_set(key, {"n": 0}, None)

    def increment(_: int) -> int:
        conflicts = 0
        while True:
            pointer = store.read_pointer(key)
            assert pointer is not None
            try:
                store.compare_and_set(key, {"n": pointer.value["n"] + 1}, pointer)
                return conflicts
            except PreconditionFailed:
                conflicts += 1

    with ThreadPoolExecutor(8) as pool:
        conflicts = sum(pool.map(increment, range(40)))
    final = store.read_pointer(key)
    assert final is not None and final.value["n"] == 40
    assert conflicts > 0  # the writers really raced


def test_update_applies_every_concurrent_change_once(store: ObjectStore) -> None:
    key = "curation/tally.json"
    calls = []

    def add(name: str) -> None:
        def change(value: dict | None) -> dict:
            calls.append(name)
            names = (value or {"names": []})["names"]
            return {"names": [*names, name]}

        store.update(key, change)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(add, [f"w{i}" for i in range(32)]))
    final = store.read_pointer(key)
    assert final is not None and sorted(final.value["names"]) == sorted(f"w{i}" for i in range(32))
    assert len(calls) > 32  # some changes lost a race and were applied again, on the value then current


def test_update_keeps_an_object_when_asked_and_gives_up_under_endless_contention(store: ObjectStore) -> None:
    key = "curation/kept.json"
    assert store.update(key, lambda value: KEEP) is None and not store.exists(key)
    store.update(key, lambda value: {"version": 3})
    assert store.update(key, lambda value: KEEP if value and value["version"] >= 2 else {"version": 2}) == \
        {"version": 3}

    def always_overtaken(value: dict | None) -> dict:  # another writer lands between every read and write
        store.put_json(key, {"version": (value or {"version": 0})["version"] + 100})
        return {"version": -1}

    with pytest.raises(TooMuchContention):
        store.update(key, always_overtaken, attempts=3)
    assert store.get_json(key)["version"] > 3


def test_the_local_stack_holds_many_buckets_with_data(stack) -> None:
    """Each bucket is a SeaweedFS collection with volumes of its own: weed mini's own volume limit let 66
    buckets hold data on this machine, then every PUT to a new one failed with 500 ("no free volumes")."""
    def fill(_: int) -> bytes:
        store = ObjectStore.from_settings(make_settings(stack, f"many-{uuid4().hex[:12]}"))
        store.ensure_bucket()
        store.put_bytes("images/ab/1.jpg", b"\xff\xd8photo")
        return store.get_bytes("images/ab/1.jpg")

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(fill, range(100))) == [b"\xff\xd8photo"] * 100
