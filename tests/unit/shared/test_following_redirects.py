"""The one redirect-following GET (shared.network_safety.get_following_redirects), against a real aiohttp
server on loopback: chains, relative Locations, loops, a missing Location, and a hop the caller refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from shared.network_safety import (
    BlockedAddress,
    RedirectWithoutLocation,
    TooManyRedirects,
    check_url,
    get_following_redirects,
)

pytestmark = pytest.mark.unit


def _app() -> web.Application:
    async def hop(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(text="arrived")
        raise web.HTTPFound(f"/hop/{n - 1}" if n % 2 else f"{request.url.origin()}/hop/{n - 1}")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/loop")

    async def relative(request: web.Request) -> web.Response:
        raise web.HTTPSeeOther("../hop/0")

    async def no_location(request: web.Request) -> web.Response:
        return web.Response(status=302)

    async def private(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("http://10.0.0.1/x.jpg")

    app = web.Application()
    app.router.add_get("/hop/{n}", hop)
    app.router.add_get("/loop", loop)
    app.router.add_get("/dir/relative", relative)
    app.router.add_get("/no-location", no_location)
    app.router.add_get("/private", private)
    return app


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    runner = web.AppRunner(_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_chain_is_followed_and_every_hop_checked(base_url: str) -> None:
    seen: list[str] = []
    async with aiohttp.ClientSession() as session:
        async with get_following_redirects(session, f"{base_url}/hop/4", 5, seen.append) as response:
            assert response.status == 200 and await response.text() == "arrived"
        assert [url.rsplit("/", 1)[1] for url in seen] == ["4", "3", "2", "1", "0"]
        async with get_following_redirects(session, f"{base_url}/dir/relative", 2, seen.append) as response:
            assert await response.text() == "arrived" and seen[-1] == f"{base_url}/hop/0"


async def test_loops_missing_locations_and_refused_hops_raise(base_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TooManyRedirects):
            async with get_following_redirects(session, f"{base_url}/loop", 3, lambda url: None):
                pass
        with pytest.raises(TooManyRedirects):  # a chain one longer than allowed
            async with get_following_redirects(session, f"{base_url}/hop/3", 2, lambda url: None):
                pass
        with pytest.raises(RedirectWithoutLocation) as missing:
            async with get_following_redirects(session, f"{base_url}/no-location", 3, lambda url: None):
                pass
        assert missing.value.status == 302
        with pytest.raises(BlockedAddress):  # the redirect target is refused before any request to it
            async with get_following_redirects(session, f"{base_url}/private", 3,
                                               lambda url: check_url(url, allow_loopback=True)):
                pass
