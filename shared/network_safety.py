"""Where a service may connect for an untrusted URL (the harvester, /predict by URL): no private, loopback or
link-local address, ever by surprise; and the one redirect-following GET both use (:func:`get_following_redirects`).

The check runs on the address actually connected to: :class:`GuardedResolver` filters every DNS answer
(so a public name that resolves to 10.0.0.1 is refused, including on redirects), and
:func:`check_url` refuses IP literals before a request, because aiohttp connects to those without
asking the resolver.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from fnmatch import fnmatch
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})


class BlockedAddress(OSError):
    """The URL's host is, or resolves to, an address the harvester must not contact."""


class UnsupportedURL(ValueError):
    """Not an http(s) URL with a host."""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_refusal(address: IPAddress, allow_loopback: bool) -> str | None:
    """Why ``address`` may not be contacted, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return None if allow_loopback else "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    if address.is_multicast or address.is_reserved or address.is_unspecified:
        return "reserved"
    if not address.is_global:
        return "not global"
    return None


def check_address(host: str, address: str, allow_loopback: bool) -> None:
    refusal = address_refusal(ipaddress.ip_address(address), allow_loopback)
    if refusal is not None:
        raise BlockedAddress(f"blocked address: {host} -> {address} ({refusal})")


def check_url(url: str, allow_loopback: bool) -> str:
    """The URL's lower-case host; raises if it is not http(s) or its host is a forbidden IP literal."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise UnsupportedURL(f"unsupported URL: {url[:200]}")
    host = parts.hostname.lower()
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return host
    check_address(host, str(literal), allow_loopback)
    return host


class GuardedResolver(AbstractResolver):
    """DNS with host overrides (like ``curl --resolve``), refusing forbidden addresses."""

    def __init__(self, overrides: dict[str, str], allow_loopback: bool, upstream: AbstractResolver | None = None):
        for ip in overrides.values():
            ipaddress.ip_address(ip)  # a typo in the settings fails at start, not per request
        self.overrides = {pattern.lower(): ip for pattern, ip in overrides.items()}
        self.allow_loopback = allow_loopback
        self._upstream = upstream

    def override(self, host: str) -> str | None:
        host = host.lower().rstrip(".")
        if host in self.overrides:
            return self.overrides[host]
        for pattern, ip in self.overrides.items():
            if fnmatch(host, pattern):
                return ip
        return None

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        forced = self.override(host)
        if forced is not None:
            ip = ipaddress.ip_address(forced)
            results: list[ResolveResult] = [ResolveResult(
                hostname=host, host=forced, port=port,
                family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                proto=0, flags=socket.AI_NUMERICHOST,
            )]
        else:
            if self._upstream is None:
                self._upstream = DefaultResolver()
            results = await self._upstream.resolve(host, port, family)
        refusals = {r["host"]: address_refusal(ipaddress.ip_address(r["host"]), self.allow_loopback)
                    for r in results}
        allowed = [r for r in results if refusals[r["host"]] is None]
        if not allowed:
            why = ", ".join(f"{address} ({reason})" for address, reason in sorted(refusals.items()))
            raise BlockedAddress(f"blocked address: {host} -> {why or 'no address'}")
        return allowed

    async def close(self) -> None:
        if self._upstream is not None:
            await self._upstream.close()


class RedirectWithoutLocation(aiohttp.ClientError):
    """A redirect status without a Location header."""

    def __init__(self, status: int) -> None:
        super().__init__(f"{status} redirect without a Location")
        self.status = status


class TooManyRedirects(aiohttp.ClientError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} redirects")
        self.limit = limit


@asynccontextmanager
async def get_following_redirects(session: aiohttp.ClientSession, url: str, max_redirects: int,
                                  check_hop: Callable[[str], object]) -> AsyncIterator[aiohttp.ClientResponse]:
    """GET ``url``, following at most ``max_redirects`` redirects by hand, and yield the final response.

    ``check_hop(url)`` runs before every request (the URL itself, then each Location, resolved against the URL
    it came from) and raises to refuse it; the session's :class:`GuardedResolver` checks the addresses each
    name resolves to at connect time. aiohttp's own redirect following would skip both.
    """
    current = url
    for _hop in range(max_redirects + 1):
        check_hop(current)
        response = await session.get(current, allow_redirects=False)
        if response.status in REDIRECT_STATUS:
            location = response.headers.get("Location")
            response.release()
            if not location:
                raise RedirectWithoutLocation(response.status)
            current = urljoin(current, location)
            continue
        try:
            yield response
        finally:
            response.release()
        return
    raise TooManyRedirects(max_redirects)
