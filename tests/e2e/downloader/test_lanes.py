"""Fetch lanes in child processes, for real: a lane that dies fails its harvest with a clear error and loses
nothing (a rerun completes it), and the lanes never outlive their harvest."""

from __future__ import annotations

import os
import signal
from typing import Any

import psutil
import pytest

from services.downloader.harvest.engine import Harvester, HarvestHooks
from services.downloader.harvest.lane_runners import LaneFailed
from services.downloader.harvest.state import HarvestState
from shared.curation import Blacklist

from .conftest import DOMAINS, new_request
from .webfixture import SourceRow, species_rows

pytestmark = pytest.mark.e2e


def lane_processes() -> list[psutil.Process]:
    """This process's fetch lanes: the children of its multiprocessing fork server."""
    servers = [child for child in psutil.Process().children()
               if "forkserver" in " ".join(child.cmdline())]
    return [lane for server in servers for lane in server.children()]


async def test_a_lane_killed_mid_harvest_fails_it_clearly_and_a_rerun_completes_it(
        web, manifests, import_rows, downloader_settings) -> None:
    rows = species_rows(web, 160, start=1200, domains=DOMAINS)
    info = import_rows(rows)
    request = new_request(manifests, info, concurrency=2, per_domain=1)
    killed: list[int] = []
    seen: list[int] = []

    def kill_a_lane(progress: dict[str, Any]) -> None:
        lanes = lane_processes()
        seen.append(len(lanes))
        if not killed and progress["done"] >= 10 and lanes:
            os.kill(lanes[0].pid, signal.SIGKILL)
            killed.append(lanes[0].pid)

    with pytest.raises(LaneFailed, match=r"stopped: its process ended \(killed by SIGKILL\)"):
        await Harvester(manifests.store, request, downloader_settings, Blacklist(),
                        HarvestHooks(progress=kill_a_lane)).run()
    assert killed and max(seen) == 2
    _, alive = psutil.wait_procs(lane_processes(), timeout=10)
    assert not alive  # the other lane was stopped with its harvest
    checkpointed = HarvestState(manifests.store, request.id).load_results()
    assert 10 <= len(checkpointed) < len(rows)

    outcome = await Harvester(manifests.store, request, downloader_settings, Blacklist()).run()
    table = manifests.read(info.dataset, outcome.manifest_version)
    assert table.column("status").to_pylist() == ["ok"] * len(rows)
    assert outcome.counts["resumed"] == len(checkpointed)
    assert not lane_processes()


async def test_parked_dead_hosts_do_not_stall_the_live_ones(web, manifests, import_rows,
                                                           downloader_settings) -> None:
    """One lane (the default on 2 CPUs), one request at a time: four dead hosts with more rows than the lane
    holds would fill it while parked; the live host's rows are all stored before the parks end."""
    from sporeprint.stack import free_port

    dead = [SourceRow(f"http://gone-{host}.test:{free_port()}/species/1/{n}.jpg", "Lost fungus")
            for host in range(4) for n in range(25)]
    live = species_rows(web, 60, start=1500, domains=DOMAINS[:1])
    info = import_rows(dead + live)
    request = new_request(manifests, info, concurrency=1, per_domain=1, retries=0, breaker_failures=1, park_s=6,
                          max_parks=1)
    ticks: list[tuple[int, list[str]]] = []
    settings = downloader_settings.model_copy(update={"lanes": 1})
    outcome = await Harvester(manifests.store, request, settings, Blacklist(),
                              HarvestHooks(progress=lambda p: ticks.append((p["ok"], p["domains_parked"])))).run()
    assert outcome.counts["ok"] == len(live) and outcome.counts["failed"] == len(dead)
    assert any(ok == len(live) and parked for ok, parked in ticks), ticks[-5:]
