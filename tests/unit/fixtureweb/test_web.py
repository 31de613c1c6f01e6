"""Routing, counters, opaque media URLs, random faults and warming of the fixture web."""

from __future__ import annotations

import io
import json
import urllib.request

import pytest
from PIL import Image

from fixtureweb.config import DomainConfig, Latency, WebConfig
from fixtureweb.content import ImageSpec, decode_token, encode_token, media_path
from fixtureweb.faults import Fault, assigned_fault
from fixtureweb.web import FixtureWeb

pytestmark = pytest.mark.unit


async def test_host_header_and_path_prefix_serve_the_same_bytes(fixture_web, fetch):
    by_host = fixture_web.url("fungi-atlas.test", "/species/1/2.jpg", style="host")
    by_path = fixture_web.url("fungi-atlas.test", "/species/1/2.jpg", style="path")
    assert by_host.startswith("http://fungi-atlas.test:") and by_path.startswith("http://127.0.0.1:")
    status_a, _, a = await fetch(by_host)
    status_b, _, b = await fetch(by_path)
    assert status_a == status_b == 200 and a == b


async def test_domains_with_equal_settings_serve_equal_sizes(fixture_web, fetch):
    _, _, a = await fetch(fixture_web.url("fungi-atlas.test", "/species/1/2.jpg", style="path"))
    _, _, b = await fetch(fixture_web.url("mirror.test", "/species/1/2.jpg", style="path"))
    assert Image.open(io.BytesIO(a)).size == Image.open(io.BytesIO(b)).size


@pytest.mark.parametrize("path", ["/species/99/1.jpg", "/species/x/1.jpg", "/irrelevant/poster/1.jpg",
                                  "/fault/no-such-fault/1.jpg", "/media/nothex.jpg", "/media/00000000000000000000.jpg",
                                  "/species/1/1.gif", "/elsewhere"])
async def test_unknown_paths_are_404(fixture_web, fetch, path):
    status, _, _ = await fetch(fixture_web.url("fungi-atlas.test", path, style="path"))
    assert status == 404


@pytest.mark.parametrize("query", ["?times=x", "?size=big", "?rate=fast", "?hops=many"])
async def test_bad_query_knobs_are_400(fixture_web, fetch, query):
    fault = {"?times=x": "rate-limited", "?size=big": "redirect", "?rate=fast": "slow", "?hops=many": "redirect-chain"}
    path = f"/fault/{fault[query]}/1.jpg" if query != "?size=big" else "/species/0/1.jpg"
    status, _, body = await fetch(fixture_web.url("fungi-atlas.test", path, style="path") + query)
    assert status == 400 and b"bad query" in body


async def test_unknown_host_is_404(fixture_web, fetch):
    status, _, body = await fetch(f"http://unknown-host.test:{fixture_web.port}/species/1/1.jpg")
    assert status == 404 and b"no such fixture host" in body


async def test_index_and_robots(fixture_web, fetch):
    status, _, body = await fetch(fixture_web.base_url + "/")
    assert status == 200 and b"fungi-atlas.test" in body
    status, _, body = await fetch(fixture_web.url("fungi-atlas.test", "/robots.txt", style="path"))
    assert status == 200 and b"User-agent" in body


async def test_counters_per_domain_and_path(fixture_web, fetch):
    path = "/species/3/777.jpg"
    before = fixture_web.log.count("mirror.test")
    await fetch(fixture_web.url("mirror.test", path, style="path"))
    assert fixture_web.log.count("mirror.test", path) == 1
    await fetch(fixture_web.url("mirror.test", path, style="host"))
    assert fixture_web.log.count("mirror.test", path) == 2
    assert fixture_web.log.count("mirror.test") == before + 2
    assert fixture_web.log.statuses("mirror.test")[200] >= 2
    status, _, body = await fetch(fixture_web.info.stats_url)
    assert status == 200
    assert json.loads(body)["paths"]["mirror.test"][path] == 2


async def test_media_urls_are_opaque_and_decodable(fixture_web, fetch):
    spec = ImageSpec("species", 2, 123456)
    token = encode_token(spec)
    assert decode_token(token) == (spec, 0)
    assert "species" not in token and len(token) == 20
    other = encode_token(spec, salt=1)
    assert other != token and decode_token(other) == (spec, 1)
    _, _, a = await fetch(fixture_web.url("fungi-atlas.test", f"/media/{token}.jpg", style="path"))
    _, _, b = await fetch(fixture_web.url("fungi-atlas.test", f"/media/{other}.jpg", style="path"))
    _, _, c = await fetch(fixture_web.url("fungi-atlas.test", "/species/2/123456.jpg", style="path"))
    assert a == b == c


async def test_irrelevant_images_are_served(fixture_web, fetch):
    path = media_path(ImageSpec("herbarium_sheet", 0, 5))
    status, _, body = await fetch(fixture_web.url("herbarium-digital.test", path, style="path"))
    assert status == 200
    image = Image.open(io.BytesIO(body))
    assert image.height > image.width  # sheets are portrait
    status, _, _ = await fetch(fixture_web.url("herbarium-digital.test", "/irrelevant/envelope/5.jpg", style="path"))
    assert status == 200


async def test_random_faults_follow_the_assignment(fixture_web, fetch):
    domain = fixture_web.config.domain("flaky.test")
    expected = {Fault.NOT_FOUND: 404, Fault.SERVER_ERROR: 500, None: 200, Fault.TRUNCATED: 200}
    seen = set()
    for seed in range(30):
        path = media_path(ImageSpec("species", seed % 5, seed))
        fault = assigned_fault(domain.name, path, domain.fault_rates)
        status, _, body = await fetch(fixture_web.url(domain.name, path, style="path"))
        assert status == expected[fault], (path, fault)
        if fault == Fault.TRUNCATED:
            with pytest.raises(OSError):
                Image.open(io.BytesIO(body)).load()
        seen.add(fault)
    assert {None, Fault.NOT_FOUND} <= seen
    # Readable paths never get random faults.
    status, _, _ = await fetch(fixture_web.url(domain.name, "/species/0/1.jpg", style="path"))
    assert status == 200


def test_fault_assignment_is_stable_and_near_the_rates():
    rates = {Fault.NOT_FOUND: 0.1, Fault.REDIRECT: 0.05}
    paths = [media_path(ImageSpec("species", 0, i)) for i in range(4000)]
    faults = [assigned_fault("x.test", p, rates) for p in paths]
    assert faults == [assigned_fault("x.test", p, rates) for p in paths]
    assert 0.08 < faults.count(Fault.NOT_FOUND) / len(paths) < 0.12
    assert 0.035 < faults.count(Fault.REDIRECT) / len(paths) < 0.065
    assert assigned_fault("x.test", paths[0], {}) is None


def test_start_stop_free_port_and_warm():
    config = WebConfig(n_classes=3, domains=(DomainConfig(name="a.test", latency=Latency(median_ms=0),
                                                          image_size=48),))
    web = FixtureWeb(config)
    urls = [f"http://a.test:1/species/{i % 3}/{i}.jpg" for i in range(6)] + ["http://a.test:1/nothing"]
    assert web.warm(urls) == 6
    renders = web.store.renders
    with web:
        assert web.port > 0
        body = urllib.request.urlopen(web.url("a.test", "/species/1/4.jpg", style="path"), timeout=10).read()
        assert Image.open(io.BytesIO(body)).format == "JPEG"
        assert web.store.renders == renders  # served from the warmed cache
        port = web.port
    with pytest.raises(RuntimeError):
        _ = web.port
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/a.test/species/1/4.jpg", timeout=2)


def test_two_servers_side_by_side():
    config = WebConfig(n_classes=2, domains=(DomainConfig(name="a.test", latency=Latency(median_ms=0),
                                                          image_size=32),))
    with FixtureWeb(config) as one, FixtureWeb(config) as two:
        assert one.port != two.port
        a = urllib.request.urlopen(one.url("a.test", "/species/0/1.jpg", style="path"), timeout=10).read()
        b = urllib.request.urlopen(two.url("a.test", "/species/0/1.jpg", style="path"), timeout=10).read()
        assert a == b
        assert one.log.count() == two.log.count() == 1


def test_size_query_and_cache_bound():
    config = WebConfig(n_classes=2, cache_bytes=20_000,
                       domains=(DomainConfig(name="a.test", latency=Latency(median_ms=0), image_size=64),))
    with FixtureWeb(config) as web:
        body = urllib.request.urlopen(web.url("a.test", "/species/0/1.jpg?size=40", style="path"), timeout=10).read()
        assert max(Image.open(io.BytesIO(body)).size) == 40
        for i in range(20):
            urllib.request.urlopen(web.url("a.test", f"/species/0/{i}.png", style="path"), timeout=10).read()
        assert web.store.cached_bytes() <= 20_000
