"""Address checks and the guarded resolver (no network: a fake upstream DNS)."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from shared.network_safety import (
    BlockedAddress,
    GuardedResolver,
    UnsupportedURL,
    address_refusal,
    check_url,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("address", "loopback_allowed", "refusal"), [
    ("93.184.216.34", False, None),
    ("2606:4700::1111", False, None),
    ("127.0.0.1", False, "loopback"),
    ("127.0.0.1", True, None),
    ("::1", True, None),
    ("10.0.0.1", True, "private"),
    ("172.16.0.1", True, "private"),
    ("192.168.1.1", True, "private"),
    ("169.254.169.254", True, "link-local"),
    ("fe80::1", True, "link-local"),
    ("fc00::1", True, "private"),
    ("::ffff:10.0.0.1", True, "private"),
    ("::ffff:127.0.0.1", False, "loopback"),
    ("224.0.0.1", True, "reserved"),
    ("100.64.0.1", True, "not global"),
])
def test_address_refusal(address: str, loopback_allowed: bool, refusal: str | None) -> None:
    assert address_refusal(ipaddress.ip_address(address), loopback_allowed) == refusal


def test_check_url() -> None:
    assert check_url("https://Fungi.Example.org/a.jpg", False) == "fungi.example.org"
    with pytest.raises(BlockedAddress):
        check_url("http://192.168.0.10/x", True)
    with pytest.raises(BlockedAddress):
        check_url("http://[::1]:8080/x", False)
    for bad in ("ftp://example.org/x.jpg", "file:///etc/passwd", "http:///nohost", "javascript:alert(1)"):
        with pytest.raises(UnsupportedURL):
            check_url(bad, True)


class FakeDNS(AbstractResolver):
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        self.asked.append(host)
        return [ResolveResult(hostname=host, host=ip, port=port, family=socket.AF_INET, proto=0, flags=0)
                for ip in self.answers[host]]

    async def close(self) -> None:
        pass


async def test_overrides_win_and_are_checked() -> None:
    dns = FakeDNS({})
    resolver = GuardedResolver({"*.test": "127.0.0.1", "exact.org": "93.184.216.34"}, True, dns)
    assert (await resolver.resolve("fungi-atlas.test", 80))[0]["host"] == "127.0.0.1"
    assert (await resolver.resolve("EXACT.org", 80))[0]["host"] == "93.184.216.34"
    assert dns.asked == []
    strict = GuardedResolver({"*.test": "127.0.0.1"}, False, dns)
    with pytest.raises(BlockedAddress, match="loopback"):
        await strict.resolve("fungi-atlas.test", 80)


async def test_private_dns_answers_are_refused_and_mixed_answers_filtered() -> None:
    dns = FakeDNS({"evil.org": ["10.1.2.3"], "mixed.org": ["192.168.0.4", "93.184.216.34"]})
    resolver = GuardedResolver({}, True, dns)
    with pytest.raises(BlockedAddress, match="10.1.2.3 \\(private\\)"):
        await resolver.resolve("evil.org", 80)
    assert [r["host"] for r in await resolver.resolve("mixed.org", 80)] == ["93.184.216.34"]


def test_a_bad_override_fails_at_start() -> None:
    with pytest.raises(ValueError):
        GuardedResolver({"*.test": "not-an-ip"}, True)
