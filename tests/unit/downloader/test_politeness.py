"""Per-domain adaptation, Retry-After, noai and the harvest options (in-process)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict
from pydantic import ValidationError

from services.downloader.harvest.domains import DomainGate
from services.downloader.harvest.fetch import has_noai, retry_after_seconds
from services.downloader.harvest.options import HarvestOptions

pytestmark = pytest.mark.unit


def gate(**overrides: object) -> DomainGate:
    values = {"name": "fungi.test", "max_limit": 8, "breaker_failures": 3, "park_s": 10.0, "max_parks": 2}
    values.update(overrides)
    return DomainGate(**values)  # type: ignore[arg-type]


def test_throttle_halves_the_limit_and_pauses_the_domain() -> None:
    g = gate()
    g.queue.append("row")
    assert g.ready(0.0) and g.allowed == 8
    g.on_throttle(now=100.0, pause_s=5.0)
    assert g.allowed == 4 and not g.ready(104.9) and g.ready(105.0)


def test_successes_grow_the_limit_back_up_to_the_maximum() -> None:
    g = gate()
    g.on_throttle(0.0, 0.0)
    g.on_throttle(0.0, 0.0)
    assert g.allowed == 2
    for _ in range(200):
        g.on_success(0.1)
    assert g.allowed == 8


def test_rising_latency_slows_the_domain_down() -> None:
    g = gate()
    for _ in range(10):
        g.on_success(0.05)
    for _ in range(30):
        g.on_success(3.0)
    assert g.allowed < 8


def test_breaker_parks_then_probes_then_gives_up() -> None:
    g = gate()
    g.queue.append("row")
    for _ in range(3):
        g.on_failure(now=0.0, host_trouble=True)
    assert g.parks == 1 and not g.ready(9.9) and g.ready(10.0) and g.allowed == 1  # half-open: one probe
    g.on_failure(now=10.0, host_trouble=True)  # the probe failed: parked again, twice as long
    assert g.parks == 2 and not g.ready(29.9) and g.ready(30.0)
    g.on_failure(now=30.0, host_trouble=True)
    assert g.given_up and not g.ready(1000.0)


def test_a_good_probe_closes_the_circuit() -> None:
    g = gate()
    for _ in range(3):
        g.on_failure(0.0, host_trouble=True)
    g.on_success(0.1)
    assert not g.half_open and g.allowed >= 4 and g.consecutive_failures == 0


def test_content_errors_do_not_trip_the_breaker() -> None:
    g = gate()
    for _ in range(20):
        g.on_failure(0.0, host_trouble=False)  # 404s say nothing about the host's health
    assert g.parks == 0 and g.allowed == 8


@pytest.mark.parametrize(("value", "seconds"), [
    ("3", 3.0), (" 120 ", 120.0), ("100000", 300.0), (None, None), ("soon", None), ("", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
])
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value) == seconds


@pytest.mark.parametrize(("values", "noai"), [
    (["noai"], True), (["noindex, NoAI"], True), (["noimageai"], True), (["otherbot: noai"], True),
    (["noindex"], False), ([], False), (["noarchive", "nofollow"], False),
])
def test_noai(values: list[str], noai: bool) -> None:
    headers: CIMultiDict[str] = CIMultiDict()
    for value in values:
        headers.add("X-Robots-Tag", value)
    assert has_noai(headers) is noai


def test_options_defaults_and_limits() -> None:
    options = HarvestOptions()
    assert options.resize.max_side == 512 and options.per_domain <= options.concurrency
    assert HarvestOptions(concurrency=4, per_domain=16).per_domain == 4
    assert HarvestOptions.model_validate({"resize": {"max_side": None}}).resize.max_side is None
    for bad in ({"concurrency": 0}, {"retries": -1}, {"resize": {"quality": 5}}, {"classes": []},
                {"max_per_class": 0}, {"unknown": 1}, {"timeout": "soon"}):
        with pytest.raises(ValidationError):
            HarvestOptions.model_validate(bad)
