"""SSRF rules for URL fetches: which addresses and URLs are refused before any connection."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from services.inference.fetch import UrlRefused, address_allowed, check_url, fetch_photo, make_session

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


def test_literal_hosts_are_checked_before_any_request() -> None:
    for url in ("http://10.0.0.1/x", "http://[fe80::1]/x", "http://169.254.169.254/", "http://localhost:80/",
                "http://127.0.0.1:8080/x"):
        with pytest.raises(UrlRefused):
            check_url(url, allow_loopback=False)
    assert check_url("http://127.0.0.1:8080/x", allow_loopback=True) == "127.0.0.1"
    assert check_url("https://Example.org/x.jpg") == "example.org"  # names are checked by the resolver


async def test_names_resolving_to_loopback_are_refused_at_connect_time() -> None:
    hostname = socket.gethostname()
    if not ipaddress.ip_address(socket.gethostbyname(hostname)).is_loopback:
        pytest.skip(f"{hostname} does not resolve to loopback on this machine")
    session = make_session(allow_loopback=False, timeout_s=5)
    try:
        with pytest.raises(UrlRefused, match="resolves to a private or reserved address"):
            await fetch_photo(session, f"http://{hostname}:9/x.jpg", 1000, 0, allow_loopback=False)
    finally:
        await session.close()
