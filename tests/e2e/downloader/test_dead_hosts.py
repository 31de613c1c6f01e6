"""A harvest's fetch loop, for real: dead hosts do not stall the live ones."""

from __future__ import annotations

import pytest

from services.downloader.harvest.engine import Harvester, HarvestHooks
from shared.curation import Blacklist

from .conftest import DOMAINS, new_request
from .webfixture import SourceRow, species_rows

pytestmark = pytest.mark.e2e


async def test_parked_dead_hosts_do_not_stall_the_live_ones(web, manifests, import_rows,
                                                           downloader_settings) -> None:
    """One request at a time: four dead hosts, parked by their circuit breakers, hold their rows back while
    the live host's rows are all stored before the parks end."""
    from sporeprint.stack import free_port

    dead = [SourceRow(f"http://gone-{host}.test:{free_port()}/species/1/{n}.jpg", "Lost fungus")
            for host in range(4) for n in range(25)]
    live = species_rows(web, 60, start=1500, domains=DOMAINS[:1])
    info = import_rows(dead + live)
    request = new_request(manifests, info, concurrency=1, per_domain=1, retries=0, breaker_failures=1, park_s=6,
                          max_parks=1)
    ticks: list[tuple[int, list[str]]] = []
    outcome = await Harvester(manifests.store, request, downloader_settings, Blacklist(),
                              HarvestHooks(progress=lambda p: ticks.append((p["ok"], p["domains_parked"])))).run()
    assert outcome.counts["ok"] == len(live) and outcome.counts["failed"] == len(dead)
    assert any(ok == len(live) and parked for ok, parked in ticks), ticks[-5:]
