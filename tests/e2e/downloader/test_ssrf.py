"""SSRF: URLs come from untrusted files. Redirects to private, link-local or (by default) loopback
addresses are refused before any connection, whether the address is literal or comes from DNS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from services.downloader.harvest.fetch import FetchLimits, Outcome, fetch_image
from shared.network_safety import GuardedResolver

pytestmark = pytest.mark.e2e

PRIVATE_TARGETS = [
    "http://10.0.0.1/x.jpg",
    "http://192.168.1.20/x.jpg",
    "http://172.16.5.4:8080/x.jpg",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:10.0.0.1]/x.jpg",
    "http://[fe80::1]/x.jpg",
    "http://internal.test/x.jpg",  # a name whose DNS answer is private (override below)
    "http://0.0.0.0/x.jpg",
]


@pytest.fixture
async def redirector(unused_tcp_port: int) -> AsyncIterator[str]:
    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": request.query["to"]})

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=b"\xff\xd8\xff\xe0 not really", content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/go", redirect)
    app.router.add_get("/img", image)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        yield f"http://public.test:{unused_tcp_port}"
    finally:
        await runner.cleanup()


def session_with(allow_loopback: bool, started: list[str], connected: list[int] | None = None
                 ) -> aiohttp.ClientSession:
    """A session like the harvester's, recording each request's URL and each TCP connection made."""
    resolver = GuardedResolver({"public.test": "127.0.0.1", "internal.test": "10.9.8.7"}, allow_loopback)
    trace = aiohttp.TraceConfig()

    async def on_request(session, context, params) -> None:  # noqa: ANN001 - aiohttp's trace signature
        started.append(str(params.url))

    async def on_connected(session, context, params) -> None:  # noqa: ANN001
        if connected is not None:
            connected.append(1)

    trace.on_request_start.append(on_request)
    trace.on_connection_create_end.append(on_connected)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver), trace_configs=[trace])


@pytest.mark.parametrize("target", PRIVATE_TARGETS)
async def test_redirect_to_a_private_address_is_refused(redirector: str, target: str) -> None:
    started: list[str] = []
    connected: list[int] = []
    async with session_with(True, started, connected) as session:
        fetched = await fetch_image(session, f"{redirector}/go?to={target}", FetchLimits(10**6, 5, True))
    assert fetched.outcome is Outcome.failed
    assert fetched.error.startswith("blocked-address"), fetched.error
    target_host = urlsplit(target).hostname
    if target_host != "internal.test":  # an IP literal is refused before the request even starts
        assert [urlsplit(url).hostname for url in started] == ["public.test"], started
    assert len(connected) == 1  # the only TCP connection made was to the redirector


async def test_direct_private_url_is_refused_without_a_request() -> None:
    started: list[str] = []
    async with session_with(True, started) as session:
        fetched = await fetch_image(session, "http://10.0.0.1/x.jpg", FetchLimits(10**6, 5, True))
    assert (fetched.outcome, started) == (Outcome.failed, [])


async def test_loopback_is_refused_unless_allowed(redirector: str) -> None:
    started: list[str] = []
    async with session_with(False, started) as session:
        by_name = await fetch_image(session, f"{redirector}/img", FetchLimits(10**6, 5, False))
        literal = await fetch_image(session, "http://127.0.0.1:9/img", FetchLimits(10**6, 5, False))
    assert by_name.error.startswith("blocked-address") and "loopback" in by_name.error
    assert literal.error.startswith("blocked-address")
    async with session_with(True, started) as session:
        allowed = await fetch_image(session, f"{redirector}/img", FetchLimits(10**6, 5, True))
    assert allowed.outcome is Outcome.ok


async def test_non_http_redirects_are_refused(redirector: str) -> None:
    async with session_with(True, []) as session:
        for target in ("file:///etc/passwd", "ftp://example.org/x.jpg", "gopher://x/"):
            fetched = await fetch_image(session, f"{redirector}/go?to={target}", FetchLimits(10**6, 5, True))
            assert fetched.outcome is Outcome.failed and fetched.error.startswith("unsupported-url"), target
