"""A fixture web for the HTTP tests: a few quiet domains plus ones with latency, noai and a connection cap."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from fixtureweb.config import DomainConfig, Latency, WebConfig
from fixtureweb.faults import Fault
from fixtureweb.resolver import LoopbackResolver
from fixtureweb.web import FixtureWeb

QUIET = Latency(median_ms=0, sigma=0)


def small_web_config() -> WebConfig:
    return WebConfig(seed=3, n_classes=5, domains=(
        DomainConfig(name="fungi-atlas.test", latency=QUIET, image_size=96),
        DomainConfig(name="mirror.test", latency=QUIET, image_size=96),
        DomainConfig(name="slow-host.test", latency=Latency(median_ms=150, sigma=0), image_size=96),
        DomainConfig(name="noai.test", latency=QUIET, image_size=96, noai=True),
        DomainConfig(name="limited.test", latency=Latency(median_ms=300, sigma=0), image_size=96, max_concurrent=1,
                     retry_after_s=7),
        DomainConfig(name="flaky.test", latency=QUIET, image_size=96,
                     fault_rates={Fault.NOT_FOUND: 0.3, Fault.SERVER_ERROR: 0.2, Fault.TRUNCATED: 0.2}),
        DomainConfig(name="herbarium-digital.test", latency=QUIET, image_size=96, specimen_host=True,
                     irrelevant_share=0.8),
    ))


@pytest.fixture(scope="session")
def fixture_web() -> Iterator[FixtureWeb]:
    with FixtureWeb(small_web_config()) as web:
        yield web


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(resolver=LoopbackResolver(), force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


Fetch = Callable[..., Awaitable[tuple[int, Any, bytes]]]


@pytest.fixture
def fetch(http: aiohttp.ClientSession) -> Fetch:
    """GET a URL: status, headers and body (redirects not followed unless asked)."""

    async def get(url: str, **kwargs: Any) -> tuple[int, Any, bytes]:
        kwargs.setdefault("allow_redirects", False)
        async with http.get(url, **kwargs) as response:
            return response.status, response.headers, await response.read()

    return get
