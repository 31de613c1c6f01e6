"""Per-domain politeness in the stack's Redis: the limit holds over every client, a killed client's slots
expire, a 429 halves the limit for everyone and pauses the domain, a park pauses it."""

from __future__ import annotations

import time
import uuid

import pytest

from services.downloader.harvest.politeness import Event, Exchange, GlobalPoliteness
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


def test_one_exchange_gives_back_then_takes_for_every_domain_in_one_round_trip(settings, domain) -> None:
    other = f"other-{domain}"
    one, two = politeness(settings, "h-four"), politeness(settings, "h-four")
    held = one.exchange_now({domain: Exchange(want=4, cap=4), other: Exchange(want=2, cap=4)})
    assert [len(held[d].tokens) for d in (domain, other)] == [4, 2] and one.round_trips == 1
    assert two.acquire_now(domain, 1, 4).tokens == []  # the limit is full
    # two of the four back (one a 429), and as many as free asked for again, in the same atomic step: the
    # throttle halves the limit (4 -> 2) and pauses the domain before the acquire runs, so nothing is granted
    again = one.exchange_now({domain: Exchange(releases=[(held[domain].tokens[0], Event.throttle, 0.3),
                                                         (held[domain].tokens[1], Event.ok, 0.0)], want=2, cap=4)})
    assert again[domain].tokens == [] and 0 < again[domain].wait_s <= 0.3
    time.sleep(0.35)
    # two still held, the limit is now 2: nobody gets one until they come back
    assert two.acquire_now(domain, 2, 4).tokens == []
    back = one.exchange_now({domain: Exchange(releases=[(t, Event.none, 0.0) for t in held[domain].tokens[2:]]),
                             other: Exchange(releases=[(t, Event.ok, 0.0) for t in held[other].tokens], want=4,
                                             cap=4)})
    assert back[domain].tokens == [] and len(back[other].tokens) == 4
    assert len(two.acquire_now(domain, 4, 4).tokens) == 2
