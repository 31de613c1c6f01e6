"""SSRF rules for URL fetches: which addresses and URLs are refused before any connection."""

from __future__ import annotations

import ipaddress

import pytest

from services.inference.core.fetch import (
    GuardedResolver,
    UrlRefused,
    address_allowed,
    check_literal_host,
    check_url,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "address",
    ["10.1.2.3", "172.16.0.9", "192.168.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1",
     "fd00::1", "fe80::1", "::", "::ffff:10.0.0.1", "192.0.2.10"],
)
def test_private_reserved_and_link_local_addresses_are_refused(address: str) -> None:
    assert not address_allowed(ipaddress.ip_address(address), allow_loopback=True)


def test_loopback_only_when_allowed() -> None:
    for address in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"):
        assert not address_allowed(ipaddress.ip_address(address), allow_loopback=False)
        assert address_allowed(ipaddress.ip_address(address), allow_loopback=True)


def test_public_addresses_are_allowed() -> None:
    for address in ("93.184.216.34", "2606:4700:4700::1111"):
        assert address_allowed(ipaddress.ip_address(address), allow_loopback=False)


@pytest.mark.parametrize(
    "url", ["ftp://example.org/x.jpg", "file:///etc/passwd", "gopher://x/", "http://", "http://u:p@example.org/",
            "http://example.org:99999/x", "javascript:alert(1)"],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(UrlRefused):
        check_url(url)


def test_literal_hosts_are_checked() -> None:
    for host in ("10.0.0.1", "[fe80::1]", "169.254.169.254", "localhost"):
        with pytest.raises(UrlRefused):
            check_literal_host(host, allow_loopback=False)
    check_literal_host("127.0.0.1", allow_loopback=True)
    check_literal_host("example.org", allow_loopback=False)  # names are checked by the resolver


async def test_resolver_refuses_names_that_resolve_to_loopback() -> None:
    resolver = GuardedResolver(allow_loopback=False)
    try:
        with pytest.raises(UrlRefused):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()
    allowing = GuardedResolver(allow_loopback=True)
    try:
        answers = await allowing.resolve("localhost", 80)
        assert answers and all(ipaddress.ip_address(a["host"]).is_loopback for a in answers)
    finally:
        await allowing.close()
