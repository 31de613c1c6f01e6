"""Fetching a photo by URL without becoming a proxy into the private network (SSRF rules).

Every hop (the URL and each redirect) is checked: http(s) only, and every address its host resolves to
must be public. The connector's resolver checks again at connect time, so a DNS answer that changes
between the check and the connection (rebinding) cannot reach a private address either.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

URL_REFUSED = "URL refused"
URL_FETCH_FAILED = "could not fetch the URL"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(ValueError):
    """The URL points somewhere the service must not go (a 400)."""


class UrlFetchFailed(ValueError):
    """The remote side failed: unreachable, an error status, too large, too slow (a 422)."""


def address_allowed(address: IPAddress, allow_loopback: bool) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return allow_loopback
    return address.is_global and not address.is_multicast


def check_url(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an acceptable URL; :class:`UrlRefused` otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"{URL_REFUSED}: not a valid URL") from exc
    if parts.scheme not in ("http", "https"):
        raise UrlRefused(f"{URL_REFUSED}: only http and https URLs are fetched")
    if not parts.hostname:
        raise UrlRefused(f"{URL_REFUSED}: the URL has no host")
    if parts.username or parts.password:
        raise UrlRefused(f"{URL_REFUSED}: credentials in URLs are not accepted")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


class GuardedResolver(AbstractResolver):
    """Resolves names like the default resolver, then refuses private, link-local and reserved answers."""

    def __init__(self, allow_loopback: bool) -> None:
        self.allow_loopback = allow_loopback
        self._resolver = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[
            ResolveResult]:
        try:
            answers = await self._resolver.resolve(host, port, family)
        except OSError as exc:
            raise UrlFetchFailed(f"{URL_FETCH_FAILED}: cannot resolve {host}") from exc
        for answer in answers:
            if not address_allowed(ipaddress.ip_address(answer["host"]), self.allow_loopback):
                raise UrlRefused(f"{URL_REFUSED}: {host} resolves to a private or reserved address")
        return answers

    async def close(self) -> None:
        await self._resolver.close()


def check_literal_host(host: str, allow_loopback: bool) -> None:
    """IP literals bypass the resolver in aiohttp, so they are checked here."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if host.lower() in ("localhost", "localhost.") and not allow_loopback:
            raise UrlRefused(f"{URL_REFUSED}: {host} is a private or reserved address") from None
        return
    if not address_allowed(address, allow_loopback):
        raise UrlRefused(f"{URL_REFUSED}: {host} is a private or reserved address")


def make_session(allow_loopback: bool, timeout_s: float, user_agent: str = "sporeprint-inference/0.1") -> Any:
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_loopback), use_dns_cache=False, limit=64)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s), headers={"User-Agent": user_agent}
    )


async def fetch_photo(session: aiohttp.ClientSession, url: str, max_bytes: int, max_redirects: int,
                      allow_loopback: bool) -> bytes:
    """The bytes at ``url``, following at most ``max_redirects`` redirects, each checked like the first."""
    for _ in range(max_redirects + 1):
        _, host, _ = check_url(url)
        check_literal_host(host, allow_loopback)
        try:
            async with session.get(url, allow_redirects=False) as response:
                if response.status in (301, 302, 303, 307, 308):
                    location = response.headers.get("Location")
                    if not location:
                        raise UrlFetchFailed(f"{URL_FETCH_FAILED}: redirect without a Location")
                    url = urljoin(url, location)
                    continue
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
        except aiohttp.ClientConnectorError as exc:
            # The resolver's refusal arrives wrapped in a connector error; surface the refusal itself.
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, UrlRefused | UrlFetchFailed):
                raise cause from None
            raise UrlFetchFailed(f"{URL_FETCH_FAILED}: cannot connect") from exc
        except (UrlRefused, UrlFetchFailed):
            raise
        except TimeoutError as exc:
            raise UrlFetchFailed(f"{URL_FETCH_FAILED}: timed out") from exc
        except aiohttp.ClientError as exc:
            raise UrlFetchFailed(f"{URL_FETCH_FAILED}: {type(exc).__name__}") from exc
    raise UrlFetchFailed(f"{URL_FETCH_FAILED}: too many redirects")
