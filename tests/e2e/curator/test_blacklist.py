"""The blacklist over HTTP against the real S3 server: seed, edits, auth, bad entries, concurrent writers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from services.curator.api.routes.blacklist import INVALID_ENTRY
from services.curator.blacklist import BLACKLIST_KEY, BlacklistStore
from services.curator.main import create_app
from shared.curation import SEED_BLACKLIST, Blacklist
from shared.storage import ObjectStore

pytestmark = pytest.mark.e2e


@pytest.fixture
def blacklist_api(run_service, settings):  # type: ignore[no-untyped-def]
    """The curator under uvicorn: real HTTP, a separate process."""
    service = run_service("curator-blacklist", "services.curator.main:app", settings)
    with httpx.Client(base_url=service.url, timeout=30,
                      headers={"Authorization": f"Bearer {settings.api_token}"}) as client:
        yield client


@pytest.fixture
def blacklist_client(override_settings, settings):  # type: ignore[no-untyped-def]
    """The same app in-process (same real S3 server), for the tests that do not race."""
    app = create_app()
    override_settings(app, settings)
    with TestClient(app, headers={"Authorization": f"Bearer {settings.api_token}"}) as client:
        yield client


def test_seeded_then_edited_and_history_kept(blacklist_client: TestClient, store: ObjectStore) -> None:
    blacklist_api = blacklist_client
    seeded = Blacklist.model_validate(blacklist_api.get("/blacklist").json())
    assert len(seeded.entries) == len(SEED_BLACKLIST) == 7
    assert seeded.match("https://mediaphoto.mnhn.fr/media/1234.jpg") is not None
    assert seeded.match("https://mediaphoto.mnhn.fr/other/1234.jpg") is None
    assert seeded.match("https://www.mycoportal.org/x.jpg") is not None

    created = blacklist_api.put("/blacklist/Herbarium-Digital.test/scans/", json={"reason": "sheets", "actor": "ann"})
    assert created.status_code == 201, created.text
    assert (created.json()["entry"], created.json()["path_prefix"]) == ("herbarium-digital.test/scans/", "/scans/")
    updated = blacklist_api.put("/blacklist/herbarium-digital.test/scans/", json={"reason": "sheets, confirmed"})
    assert updated.status_code == 200 and updated.json()["reason"] == "sheets, confirmed"
    assert store.exists(BLACKLIST_KEY)  # durable: in object storage, not in the process

    current = Blacklist.model_validate(blacklist_api.get("/blacklist").json())
    assert current.revision == 3 and len(current.entries) == 8
    assert current.match("http://herbarium-digital.test/scans/a.jpg") is not None
    assert current.match("http://herbarium-digital.test/photos/a.jpg") is None

    removed = blacklist_api.delete("/blacklist/mycoportal.org", params={"actor": "ben", "reason": "now photos"})
    assert removed.status_code == 200
    assert Blacklist.model_validate(removed.json()).match("https://mycoportal.org/x.jpg") is None
    history = blacklist_api.get("/blacklist/history").json()
    assert [(h["revision"], h["action"], h["entry"], h["actor"]) for h in history[-3:]] == [
        (2, "add", "herbarium-digital.test/scans/", "ann"),
        (3, "update", "herbarium-digital.test/scans/", "api"),
        (4, "remove", "mycoportal.org", "ben"),
    ]
    assert sum(h["action"] == "seed" for h in history) == 7


def test_mutations_need_the_token_and_valid_entries(blacklist_client: TestClient) -> None:
    blacklist_api = blacklist_client
    body = {"reason": "x"}
    assert blacklist_api.put("/blacklist/a.org", json=body, headers={"Authorization": ""}).status_code == 401
    assert blacklist_api.delete("/blacklist/mycoportal.org",
                                headers={"Authorization": "Bearer wrong"}).status_code == 403
    for bad in ("not a domain", "localhost", "http:%2F%2Fa.org", "a..org", "-a.org", "a.org%3Fq=1", "%20"):
        response = blacklist_api.put(f"/blacklist/{bad}", json=body)
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["detail"].startswith(INVALID_ENTRY)
    # limits: host 253, label 63, path prefix 2,048; the reason says which one
    for bad, reason in (("a" * 10_000 + ".org", "longer than 253"), ("x." + "a" * 64 + ".org", "valid domain name"),
                        ("a.org/" + "p" * 3000, "path prefix is longer")):
        response = blacklist_api.put(f"/blacklist/{bad}", json=body)
        assert response.status_code == 400 and reason in response.json()["detail"], response.text[:300]
    # an internationalised host is stored as it appears in URLs (IDNA)
    created = blacklist_api.put("/blacklist/Pilzé.de/bilder/", json=body)
    assert created.status_code == 201 and created.json()["entry"] == "xn--pilz-epa.de/bilder/"
    assert blacklist_api.delete("/blacklist/xn--pilz-epa.de/bilder/").status_code == 200
    assert blacklist_api.put("/blacklist/a.org", json={"reason": ""}).status_code == 422
    assert blacklist_api.put("/blacklist/a.org", json={"reason": "x", "extra": 1}).status_code == 422
    missing = blacklist_api.delete("/blacklist/never-listed.org")
    assert (missing.status_code, missing.json()["detail"]) == (404, "blacklist entry not found")
    assert len(blacklist_api.get("/blacklist").json()["entries"]) == 7  # nothing changed


def test_concurrent_http_editors_lose_no_update(blacklist_api: httpx.Client) -> None:
    def edit(i: int) -> int:
        return blacklist_api.put(f"/blacklist/site-{i}.test", json={"reason": f"writer {i}"}).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(edit, range(18)))
    assert codes == [201] * 18
    final = Blacklist.model_validate(blacklist_api.get("/blacklist").json())
    assert {f"site-{i}.test" for i in range(18)} <= {e.entry for e in final.entries}
    assert final.revision == 1 + 18
    assert len(blacklist_api.get("/blacklist/history").json()) == 7 + 18


def test_concurrent_store_writers_add_and_remove(store: ObjectStore) -> None:
    """Two stores (as two API processes would hold) racing on the same object."""
    first, second = BlacklistStore(store), BlacklistStore(ObjectStore(store.client, store.bucket))
    first.put("keep.test", "seed", "t")

    def work(i: int) -> None:
        writer = first if i % 2 else second
        writer.put(f"w{i}.test", "race", f"writer-{i % 2}")
        if i == 5:
            writer.delete("keep.test", "race", "remover")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(12)))
    entries = {e.entry for e in first.get().entries}
    assert {f"w{i}.test" for i in range(12)} <= entries
    assert "keep.test" not in entries
    assert first.get().revision == 1 + 1 + 12 + 1
