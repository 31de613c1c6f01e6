"""Fetching a photo by URL without becoming a proxy into the private network (SSRF rules).

The address policy is the one the harvester uses (``shared/network_safety.py``): every hop (the URL and
each redirect) is checked, IP literals before the request, names by a resolver that refuses private,
loopback (unless allowed), link-local and reserved answers at connect time, so DNS rebinding cannot
reach a private address either. This module adds the per-request limits and the client-facing errors.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from shared.network_safety import (
    BlockedAddress,
    GuardedResolver,
    RedirectWithoutLocation,
    TooManyRedirects,
    UnsupportedURL,
    address_refusal,
    get_following_redirects,
)
from shared.network_safety import check_url as check_harvest_url

URL_REFUSED = "URL refused"
URL_FETCH_FAILED = "could not fetch the URL"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(ValueError):
    """The URL points somewhere the service must not go (a 400)."""


class UrlFetchFailed(ValueError):
    """The remote side failed: unreachable, an error status, too large, too slow (a 422)."""


def address_allowed(address: IPAddress, allow_loopback: bool) -> bool:
    return address_refusal(address, allow_loopback) is None


def check_url(url: str, allow_loopback: bool = False) -> str:
    """The host of an acceptable URL (IP literals checked here); :class:`UrlRefused` otherwise."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise UrlRefused(f"{URL_REFUSED}: not a valid URL") from exc
    if parts.username or parts.password:
        raise UrlRefused(f"{URL_REFUSED}: credentials in URLs are not accepted")
    try:
        host = check_harvest_url(url, allow_loopback)
    except UnsupportedURL:
        raise UrlRefused(f"{URL_REFUSED}: only http(s) URLs with a host are fetched") from None
    except BlockedAddress:
        raise UrlRefused(f"{URL_REFUSED}: {parts.hostname} is a private or reserved address") from None
    if host in ("localhost", "localhost.") and not allow_loopback:
        raise UrlRefused(f"{URL_REFUSED}: {host} is a private or reserved address")
    return host


def make_session(allow_loopback: bool, timeout_s: float, user_agent: str = "sporeprint-inference/0.1") -> Any:
    resolver = GuardedResolver({}, allow_loopback=allow_loopback)
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, limit=64)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s), headers={"User-Agent": user_agent}
    )


async def fetch_photo(session: aiohttp.ClientSession, url: str, max_bytes: int, max_redirects: int,
                      allow_loopback: bool) -> bytes:
    """The bytes at ``url``, following at most ``max_redirects`` redirects, each checked like the first."""
    hops: list[str] = []  # every URL asked for, so that an error names the host it happened at

    def check_hop(hop: str) -> None:
        hops.append(hop)
        check_url(hop, allow_loopback)

    try:
        async with get_following_redirects(session, url, max_redirects, check_hop) as response:
            if response.status != 200:
                raise UrlFetchFailed(f"{URL_FETCH_FAILED}: the server answered {response.status}")
            if (response.content_length or 0) > max_bytes:
                raise UrlFetchFailed(f"{URL_FETCH_FAILED}: the image is larger than the size limit")
            data = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                data += chunk
                if len(data) > max_bytes:
                    raise UrlFetchFailed(f"{URL_FETCH_FAILED}: the image is larger than the size limit")
            return bytes(data)
    except (UrlRefused, UrlFetchFailed):
        raise
    except RedirectWithoutLocation:
        raise UrlFetchFailed(f"{URL_FETCH_FAILED}: redirect without a Location") from None
    except TooManyRedirects:
        raise UrlFetchFailed(f"{URL_FETCH_FAILED}: too many redirects") from None
    except aiohttp.ClientConnectorError as exc:
        host = urlsplit(hops[-1]).hostname
        # The resolver's refusal arrives wrapped in a connector error; surface it as a refusal.
        if isinstance(exc.__cause__, BlockedAddress) or isinstance(exc.os_error, BlockedAddress):
            raise UrlRefused(f"{URL_REFUSED}: {host} resolves to a private or reserved address") from None
        raise UrlFetchFailed(f"{URL_FETCH_FAILED}: cannot connect to {host}") from exc
    except BlockedAddress:
        host = urlsplit(hops[-1]).hostname
        raise UrlRefused(f"{URL_REFUSED}: {host} resolves to a private or reserved address") from None
    except TimeoutError as exc:
        raise UrlFetchFailed(f"{URL_FETCH_FAILED}: timed out") from exc
    except aiohttp.ClientError as exc:
        raise UrlFetchFailed(f"{URL_FETCH_FAILED}: {type(exc).__name__}") from exc
