"""Every fault mode of the fixture web, harvested for real: fixture web on loopback, the real S3 server."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from fixtureweb.content import ImageSpec
from fixtureweb.faults import Fault
from services.downloader.harvest.engine import Harvester
from shared.curation import Blacklist, seed_blacklist
from tests.contract.downloader.blacklist_app import blacklist_from

from .conftest import DOMAINS, NOAI_HOST, THROTTLED, new_request
from .webfixture import SourceRow, species_rows

pytestmark = pytest.mark.e2e

HOST = DOMAINS[0]
# fault -> (status, error prefix) a careful harvester ends with
EXPECTED: dict[Fault, tuple[str, str | None]] = {
    Fault.NOT_FOUND: ("failed", "http-404"),
    Fault.SERVER_ERROR: ("failed", "http-500"),
    Fault.UNAVAILABLE: ("ok", None),
    Fault.RATE_LIMITED: ("ok", None),
    Fault.HANG: ("failed", "timeout"),
    Fault.SLOW: ("ok", None),
    Fault.REDIRECT: ("ok", None),
    Fault.REDIRECT_CHAIN: ("ok", None),
    Fault.REDIRECT_LOOP: ("failed", "too-many-redirects"),
    Fault.REDIRECT_PRIVATE: ("failed", "blocked-address"),
    Fault.REDIRECT_OFFSITE: ("ok", None),
    Fault.WRONG_TYPE: ("ok", None),
    Fault.HTML: ("failed", "not-an-image"),
    Fault.HTML_AS_IMAGE: ("failed", "not-an-image"),
    Fault.EMPTY: ("failed", "empty"),
    Fault.TRUNCATED: ("failed", "undecodable"),
    Fault.SHORT_BODY: ("failed", "short-body"),
    Fault.OVERSIZED: ("failed", "too-large"),
    Fault.OVERSIZED_CHUNKED: ("failed", "too-large"),
    Fault.BOMB: ("failed", "too-many-pixels"),
    Fault.EXIF_ROTATED: ("ok", None),
    Fault.CMYK: ("ok", None),
    Fault.GRAYSCALE: ("ok", None),
    Fault.NOAI: ("skipped", "noai"),
}
QUERY = {Fault.HANG: "?seconds=20", Fault.OVERSIZED: "?bytes=3000000", Fault.OVERSIZED_CHUNKED: "?bytes=3000000"}
FAST = {"total_timeout_s": 2.0, "read_timeout_s": 1.0, "retries": 1, "backoff_s": 0.05,
        "max_bytes": 1_000_000, "resize": {"max_side": 128, "quality": 85}}


def test_the_plan_covers_every_fault() -> None:
    assert set(EXPECTED) == set(Fault)


async def test_every_fault_mode_ends_as_a_careful_harvester_would(web, manifests, import_rows, downloader_settings):
    rows = [SourceRow(web.url(HOST, f"/fault/{fault.value}/{n}.jpg{QUERY.get(fault, '')}"), "Fault fungus")
            for n, fault in enumerate(EXPECTED, start=1)]
    info = import_rows(rows)
    request = new_request(manifests, info, **FAST)
    outcome = await Harvester(manifests.store, request, downloader_settings, Blacklist()).run()
    assert outcome.state == "completed"
    table = manifests.read(info.dataset, outcome.manifest_version)
    by_url = {row["url"]: row for row in table.to_pylist()}
    got = {}
    for row, fault in zip(rows, EXPECTED, strict=True):
        result = by_url[row.url]
        got[fault] = (result["status"], (result["error"] or "").split(":")[0] or None)
        if result["status"] == "ok":
            stored = Image.open(io.BytesIO(manifests.store.get_bytes(result["storage_key"])))
            assert (stored.format, stored.mode) == ("JPEG", "RGB"), fault
            assert stored.size == (result["width"], result["height"])
            assert max(stored.size) <= 128
    assert got == EXPECTED
    # the SSRF bait was refused before any connection: the fixture web saw one request, nothing followed
    assert web.log.count(HOST, "/fault/redirect-private/10.jpg") == 1
    assert table.column("observation_id").null_count == 0 and info.rows == table.num_rows


async def test_exif_rotation_is_applied(web, manifests, import_rows, downloader_settings):
    upright = ImageSpec("species", 1, 1).dims(160)  # /fault/<f>/1.jpg shows class 1, seed 1
    assert upright[0] != upright[1] or pytest.skip("square picture: rotation invisible")
    rows = [SourceRow(web.url(HOST, "/fault/exif-rotated/1.jpg"), "Rotated fungus")]
    info = import_rows(rows)
    request = new_request(manifests, info, resize={"max_side": None})
    outcome = await Harvester(manifests.store, request, downloader_settings, Blacklist()).run()
    row = manifests.read(info.dataset, outcome.manifest_version).to_pylist()[0]
    assert row["status"] == "ok"
    assert (row["width"], row["height"]) == upright


async def test_blacklist_noai_duplicates_and_class_cap(web, manifests, import_rows, downloader_settings):
    clean = species_rows(web, 12, domains=DOMAINS[1:])
    same_bytes = [SourceRow(web.url(HOST, "/species/2/77.jpg"), "Twin fungus"),
                  SourceRow(web.url(HOST, "/species/2/77-copy.jpg"), "Twin fungus")]
    blocked = [SourceRow(web.url(DOMAINS[1], "/scans/species/1/5.jpg"), "Blocked fungus"),
               SourceRow(web.url("herbarium-digital.test", "/species/1/6.jpg"), "Blocked fungus")]
    noai = [SourceRow(web.url(NOAI_HOST, "/species/3/9.jpg"), "Private fungus")]
    info = import_rows(clean + same_bytes + blocked + noai)
    blacklist = blacklist_from({f"{DOMAINS[1]}/scans/": "scans", "herbarium-digital.test": "herbarium"})
    request = new_request(manifests, info, max_per_class=2)
    outcome = await Harvester(manifests.store, request, downloader_settings, blacklist).run()
    rows = {row["url"]: row for row in manifests.read(info.dataset, outcome.manifest_version).to_pylist()}

    assert rows[blocked[0].url]["status"] == "skipped"
    assert rows[blocked[0].url]["error"] == f"blacklisted: {DOMAINS[1]}/scans/"
    assert rows[blocked[1].url]["error"] == "blacklisted: herbarium-digital.test"
    assert web.log.count(DOMAINS[1], "/scans/species/1/5.jpg") == 0  # never fetched
    assert (rows[noai[0].url]["status"], rows[noai[0].url]["error"].split(":")[0]) == ("skipped", "noai")

    first, second = rows[same_bytes[0].url], rows[same_bytes[1].url]
    assert first["status"] == second["status"] == "ok"
    assert first["sha256"] == second["sha256"] and first["storage_key"] == second["storage_key"]
    ids = sorted([first, second], key=lambda r: list(rows).index(r["url"]))
    assert ids[0]["duplicate_of"] is None and ids[1]["duplicate_of"] == ids[0]["image_id"]

    per_class: dict[str, int] = {}
    for row in rows.values():
        if row["status"] == "ok":
            per_class[row["species"]] = per_class.get(row["species"], 0) + 1
    assert per_class and max(per_class.values()) == 2
    capped = [row for row in rows.values() if (row["error"] or "").startswith("class-cap")]
    assert len(capped) == len(clean) - 2 * len({r.label for r in clean})
    # every capped row was never requested
    assert all(web.log.count(path=row["url"].split(str(web.port), 1)[1]) == 0 for row in capped)
    stored = set(manifests.store.list("images/"))
    assert stored >= {row["storage_key"] for row in rows.values() if row["status"] == "ok"}


async def test_throttled_domain_is_backed_off_and_finishes(web, manifests, import_rows, downloader_settings):
    rows = species_rows(web, 16, start=500, domains=[THROTTLED])
    info = import_rows(rows)
    request = new_request(manifests, info, per_domain=8, retries=6, backoff_s=0.1)
    web.log.reset()
    outcome = await Harvester(manifests.store, request, downloader_settings, Blacklist()).run()
    statuses = manifests.read(info.dataset, outcome.manifest_version).column("status").to_pylist()
    assert statuses == ["ok"] * len(rows)
    assert web.log.statuses(THROTTLED).get(429, 0) >= 1  # it did push back, and we obeyed


async def test_per_domain_limit_is_respected(web, manifests, import_rows, downloader_settings):
    rows = species_rows(web, 12, start=700, domains=[THROTTLED])
    info = import_rows(rows)
    request = new_request(manifests, info, per_domain=2, concurrency=16)
    web.log.reset()
    outcome = await Harvester(manifests.store, request, downloader_settings, Blacklist()).run()
    assert outcome.counts["ok"] == len(rows)
    assert web.log.statuses(THROTTLED).get(429, 0) == 0  # never more than 2 at once


async def test_dead_domain_is_parked_then_given_up(web, manifests, import_rows, downloader_settings):
    from sporeprint.stack import free_port

    dead = [SourceRow(f"http://gone.test:{free_port()}/species/1/{n}.jpg", "Lost fungus") for n in range(10)]
    alive = species_rows(web, 6, start=900, domains=DOMAINS[2:3])
    info = import_rows(dead + alive)
    request = new_request(manifests, info, retries=1, backoff_s=0.01, breaker_failures=2, park_s=0.1, max_parks=2,
                          per_domain=2)
    outcome = await Harvester(manifests.store, request, downloader_settings, seed_blacklist()).run()
    rows = {row["url"]: row for row in manifests.read(info.dataset, outcome.manifest_version).to_pylist()}
    assert all(rows[row.url]["status"] == "ok" for row in alive)
    errors = [rows[row.url]["error"] for row in dead]
    assert all(rows[row.url]["status"] == "failed" for row in dead)
    assert any(error.startswith("domain-unreachable") for error in errors), errors
