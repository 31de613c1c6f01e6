"""Every fault mode of the fixture web, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import io
import time

import aiohttp
import pytest
from PIL import Image, ImageOps

from fixtureweb.faults import PRIVATE_REDIRECT_TARGET, Fault
from fixtureweb.web import FixtureWeb

pytestmark = pytest.mark.unit
DOMAIN = "fungi-atlas.test"


def url(web: FixtureWeb, path: str, style: str = "path") -> str:
    return web.url(DOMAIN, path, style=style)


def decode(body: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(body))
    image.load()
    return image


async def test_clean_image(fixture_web, fetch):
    status, headers, body = await fetch(url(fixture_web, "/species/1/4.jpg"))
    assert status == 200
    assert headers["Content-Type"] == "image/jpeg"
    assert int(headers["Content-Length"]) == len(body)
    image = decode(body)
    assert image.format == "JPEG" and image.mode == "RGB" and max(image.size) == 96


async def test_not_found(fixture_web, fetch):
    status, _, _ = await fetch(url(fixture_web, "/fault/not-found/1.jpg"))
    assert status == 404


async def test_server_error(fixture_web, fetch):
    status, headers, _ = await fetch(url(fixture_web, "/fault/server-error/1.jpg"))
    assert status == 500
    assert headers["Content-Type"].startswith("text/html")


async def test_unavailable_then_ok(fixture_web, fetch):
    path = "/fault/unavailable/11.jpg"
    status, headers, _ = await fetch(url(fixture_web, path))
    assert status == 503
    assert headers["Retry-After"] == "1"
    status, _, body = await fetch(url(fixture_web, path))
    assert status == 200
    decode(body)
    assert fixture_web.log.count(DOMAIN, path) == 2


async def test_rate_limited_with_retry_after(fixture_web, fetch):
    path = "/fault/rate-limited/12.jpg"
    for _ in range(2):
        status, headers, _ = await fetch(url(fixture_web, path) + "?times=2")
        assert status == 429
        assert int(headers["Retry-After"]) >= 0
    status, _, _ = await fetch(url(fixture_web, path) + "?times=2")
    assert status == 200


async def test_always_rate_limited(fixture_web, fetch):
    for _ in range(3):
        status, _, _ = await fetch(url(fixture_web, "/fault/rate-limited/13.jpg") + "?times=-1")
        assert status == 429


async def test_hang_times_out_client(fixture_web, http):
    with pytest.raises(asyncio.TimeoutError):
        async with http.get(url(fixture_web, "/fault/hang/1.jpg") + "?seconds=1.0",
                            timeout=aiohttp.ClientTimeout(total=0.2)) as response:
            await response.read()


async def test_slow_trickle(fixture_web, http):
    started = time.perf_counter()
    async with http.get(url(fixture_web, "/fault/slow/2.jpg") + "?rate=4000") as response:
        assert response.status == 200
        body = await response.read()
    elapsed = time.perf_counter() - started
    decode(body)
    # The server pauses 0.1 s between chunks of rate/10 bytes: a lower bound, robust on a busy machine.
    chunks = -(-len(body) // 400)
    assert chunks >= 3
    assert elapsed >= (chunks - 1) * 0.1 * 0.95


async def test_redirect_to_clean_image(fixture_web, fetch):
    status, headers, _ = await fetch(url(fixture_web, "/fault/redirect/3.jpg"))
    assert status == 302
    assert headers["Location"] == url(fixture_web, "/species/3/3.jpg")
    status, _, body = await fetch(url(fixture_web, "/fault/redirect/3.jpg"), allow_redirects=True)
    assert status == 200
    decode(body)


async def test_redirect_keeps_host_routing(fixture_web, fetch):
    status, headers, _ = await fetch(url(fixture_web, "/fault/redirect/3.jpg", style="host"))
    assert status == 302
    assert headers["Location"] == f"http://{DOMAIN}:{fixture_web.port}/species/3/3.jpg"


async def test_redirect_chain(fixture_web, http):
    async with http.get(url(fixture_web, "/fault/redirect-chain/4.jpg") + "?hops=4") as response:
        assert response.status == 200
        assert len(response.history) == 4
        decode(await response.read())


async def test_redirect_loop(fixture_web, http):
    with pytest.raises(aiohttp.TooManyRedirects):
        async with http.get(url(fixture_web, "/fault/redirect-loop/4.jpg"), max_redirects=5) as response:
            await response.read()


async def test_redirect_to_private_address_is_only_a_location(fixture_web, fetch):
    status, headers, body = await fetch(url(fixture_web, "/fault/redirect-private/4.jpg"))
    assert status == 302
    assert headers["Location"] == PRIVATE_REDIRECT_TARGET == "http://10.0.0.1/x.jpg"
    assert body == b""


async def test_redirect_offsite(fixture_web, fetch):
    status, headers, _ = await fetch(url(fixture_web, "/fault/redirect-offsite/4.jpg"))
    assert status == 302
    assert headers["Location"] == fixture_web.url("mirror.test", "/species/4/4.jpg", style="path")


async def test_wrong_content_type(fixture_web, fetch):
    status, headers, body = await fetch(url(fixture_web, "/fault/wrong-type/5.jpg"))
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert decode(body).format == "JPEG"  # the bytes are a good image nevertheless


async def test_html_instead_of_image(fixture_web, fetch):
    status, headers, body = await fetch(url(fixture_web, "/fault/html/5.jpg"))
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert body.startswith(b"<!doctype html>")


async def test_html_served_as_jpeg(fixture_web, fetch):
    status, headers, body = await fetch(url(fixture_web, "/fault/html-as-image/5.jpg"))
    assert status == 200
    assert headers["Content-Type"] == "image/jpeg"
    with pytest.raises(Image.UnidentifiedImageError):
        decode(body)


async def test_empty_body(fixture_web, fetch):
    status, headers, body = await fetch(url(fixture_web, "/fault/empty/5.jpg"))
    assert status == 200 and body == b""
    assert headers["Content-Length"] == "0"


async def test_truncated_jpeg_fails_full_decode(fixture_web, fetch):
    _, _, whole = await fetch(url(fixture_web, "/fault/truncated/6-whole.jpg").replace("/fault/truncated/6-whole",
                                                                                       "/species/1/6"))
    status, headers, body = await fetch(url(fixture_web, "/fault/truncated/6.jpg"))
    assert status == 200
    assert int(headers["Content-Length"]) == len(body) < len(whole)
    assert whole.startswith(body)
    image = Image.open(io.BytesIO(body))  # the header parses ...
    assert image.format == "JPEG"
    with pytest.raises(OSError):
        image.load()  # ... the pixels do not


async def test_short_body_breaks_the_connection(fixture_web, http):
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.get(url(fixture_web, "/fault/short-body/6.jpg")) as response:
            assert response.status == 200
            await response.read()


async def test_oversized_declares_its_length(fixture_web, http):
    async with http.get(url(fixture_web, "/fault/oversized/7.jpg")) as response:
        assert response.status == 200
        declared = int(response.headers["Content-Length"])
        assert declared >= 25_000_000
        first = await response.content.read(4)
        assert first[:2] == b"\xff\xd8"


async def test_oversized_small_variant_is_a_valid_jpeg(fixture_web, fetch):
    status, _, body = await fetch(url(fixture_web, "/fault/oversized/7.jpg") + "?bytes=2000000")
    assert status == 200 and len(body) >= 1_990_000
    assert decode(body).size == (96, 96) or max(decode(body).size) == 96


async def test_oversized_chunked_has_no_length(fixture_web, http):
    async with http.get(url(fixture_web, "/fault/oversized-chunked/7.jpg") + "?bytes=3000000") as response:
        assert response.status == 200
        assert "Content-Length" not in response.headers
        assert response.headers.get("Transfer-Encoding") == "chunked"
        body = await response.read()
    assert len(body) >= 2_990_000


async def test_decompression_bomb_png(fixture_web, fetch):
    status, headers, body = await fetch(url(fixture_web, "/fault/bomb/1.png"))
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert len(body) < 200_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(body))
    width, height = int.from_bytes(body[16:20], "big"), int.from_bytes(body[20:24], "big")
    assert width * height > 100_000_000


async def test_exif_rotated_orientation_6(fixture_web, fetch):
    _, _, plain = await fetch(url(fixture_web, "/species/2/8.jpg"))
    status, _, body = await fetch(url(fixture_web, "/fault/exif-rotated/8.jpg"))
    assert status == 200
    stored = decode(body)
    assert stored.getexif()[0x0112] == 6
    upright = ImageOps.exif_transpose(stored)
    reference = decode(plain)
    assert upright.size == reference.size and stored.size == reference.size[::-1]


async def test_cmyk_jpeg(fixture_web, fetch):
    status, headers, body = await fetch(url(fixture_web, "/fault/cmyk/9.jpg"))
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert decode(body).mode == "CMYK"


async def test_grayscale_jpeg(fixture_web, fetch):
    status, _, body = await fetch(url(fixture_web, "/fault/grayscale/9.jpg"))
    assert status == 200
    assert decode(body).mode == "L"


@pytest.mark.parametrize(("ext", "mime", "pil_format"), [("png", "image/png", "PNG"),
                                                          ("webp", "image/webp", "WEBP")])
async def test_png_and_webp(fixture_web, fetch, ext, mime, pil_format):
    status, headers, body = await fetch(url(fixture_web, f"/species/0/3.{ext}"))
    assert status == 200 and headers["Content-Type"] == mime
    assert decode(body).format == pil_format


async def test_noai_header(fixture_web, fetch):
    _, headers, _ = await fetch(url(fixture_web, "/fault/noai/1.jpg"))
    assert headers["X-Robots-Tag"] == "noai"
    _, headers, _ = await fetch(url(fixture_web, "/species/0/1.jpg"))
    assert "X-Robots-Tag" not in headers
    _, headers, _ = await fetch(fixture_web.url("noai.test", "/species/0/1.jpg", style="path"))
    assert headers["X-Robots-Tag"] == "noai"


async def test_same_bytes_under_several_urls(fixture_web, fetch):
    _, _, a = await fetch(url(fixture_web, "/species/2/21.jpg"))
    _, _, b = await fetch(url(fixture_web, "/species/2/21-copy.jpg"))
    _, _, c = await fetch(url(fixture_web, "/species/2/22.jpg"))
    assert a == b != c


async def test_latency_observed_at_least_configured(fixture_web, fetch):
    started = time.perf_counter()
    status, _, _ = await fetch(fixture_web.url("slow-host.test", "/species/0/1.jpg", style="path"))
    assert status == 200
    assert time.perf_counter() - started >= 0.150


async def test_connection_cap_answers_429(fixture_web, fetch):
    target = fixture_web.url("limited.test", "/species/0/{}.jpg", style="path")
    results = await asyncio.gather(*(fetch(target.format(i)) for i in range(3)))
    statuses = sorted(status for status, _, _ in results)
    assert statuses[0] == 200 and 429 in statuses
    limited = [headers for status, headers, _ in results if status == 429]
    assert all(h["Retry-After"] == "7" for h in limited)


def test_every_fault_has_a_test():
    tested = {
        Fault.NOT_FOUND, Fault.SERVER_ERROR, Fault.UNAVAILABLE, Fault.RATE_LIMITED, Fault.HANG, Fault.SLOW,
        Fault.REDIRECT, Fault.REDIRECT_CHAIN, Fault.REDIRECT_LOOP, Fault.REDIRECT_PRIVATE, Fault.REDIRECT_OFFSITE,
        Fault.WRONG_TYPE, Fault.HTML, Fault.HTML_AS_IMAGE, Fault.EMPTY, Fault.TRUNCATED, Fault.SHORT_BODY,
        Fault.OVERSIZED, Fault.OVERSIZED_CHUNKED, Fault.BOMB, Fault.EXIF_ROTATED, Fault.CMYK, Fault.GRAYSCALE,
        Fault.NOAI,
    }
    assert tested == set(Fault)
