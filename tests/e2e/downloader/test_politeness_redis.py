"""Per-domain politeness in the stack's Redis: the limit holds over every client, a killed client's slots
expire, a 429 halves the limit for everyone and pauses the domain, a park pauses it."""

from __future__ import annotations

import time
import uuid

import pytest

from services.downloader.harvest.politeness import Event, GlobalPoliteness
from shared.queue import redis_connection

pytestmark = pytest.mark.e2e


@pytest.fixture
def domain() -> str:
    return f"{uuid.uuid4().hex[:8]}.test"


def politeness(settings, harvest_id: str, limit: int = 4, lease_s: float = 1.0) -> GlobalPoliteness:
    return GlobalPoliteness(redis_connection(settings), harvest_id, limit, lease_s)


def test_the_limit_holds_over_all_clients_and_dead_leases_expire(settings, domain) -> None:
    one, two = politeness(settings, "h-one"), politeness(settings, "h-one")
    first = one.acquire_now(domain, 3, 4)
    assert len(first.tokens) == 3
    assert len(two.acquire_now(domain, 3, 4).tokens) == 1  # 4 in all
    assert two.acquire_now(domain, 1, 4).tokens == []
    one.release_now(domain, [(first.tokens[0], Event.ok, 0.0)])
    assert len(two.acquire_now(domain, 3, 4).tokens) == 1
    one.renew_now({domain: first.tokens[1:]})
    time.sleep(1.2)  # nobody renewed two's leases: they expired; one's expire too, a second after renewal
    assert len(two.acquire_now(domain, 4, 4).tokens) == 4


def test_a_throttle_halves_the_limit_for_everyone_and_pauses_the_domain(settings, domain) -> None:
    one, two = politeness(settings, "h-two"), politeness(settings, "h-two")
    grant = one.acquire_now(domain, 4, 4)
    one.release_now(domain, [(grant.tokens[0], Event.throttle, 0.3)] +
                    [(token, Event.none, 0.0) for token in grant.tokens[1:]])
    paused = two.acquire_now(domain, 4, 4)
    assert paused.tokens == [] and 0 < paused.wait_s <= 0.3
    time.sleep(paused.wait_s + 0.05)
    assert len(two.acquire_now(domain, 4, 4).tokens) == 2  # limit 4 halved
    assert len(one.acquire_now(domain, 4, 1).tokens) == 0  # the caller's own cap (e.g. half-open) holds too


def test_a_park_pauses_every_worker(settings, domain) -> None:
    one, two = politeness(settings, "h-three"), politeness(settings, "h-three")
    grant = one.acquire_now(domain, 1, 4)
    one.release_now(domain, [(grant.tokens[0], Event.park, 5.0)])
    assert two.acquire_now(domain, 1, 4).wait_s > 4
