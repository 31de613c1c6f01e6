"""How a harvest spreads its domains over fetch lanes, and what a lane's process is sent (in-process)."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from services.downloader.core.config import DownloaderSettings
from services.downloader.harvest.assignment import Feeder, Share, share_domains
from services.downloader.harvest.engine import Harvester
from services.downloader.harvest.fetch_lane import LaneConfig, RowTask
from services.downloader.harvest.options import HarvestOptions
from services.downloader.harvest.state import HarvestRequest, RowResult
from shared.curation import Blacklist
from shared.schemas import HarvestStatus
from shared.settings import Settings
from shared.storage import ObjectStore

pytestmark = pytest.mark.unit


def lane_rows(shares: dict, rows: dict[str, int], lanes: int) -> list[float]:
    load = [0.0] * lanes
    for domain, share in shares.items():
        for lane in share.lanes:
            load[lane] += rows[domain] / len(share.lanes)
    return load


def test_small_domains_stay_whole_and_the_lanes_get_even_shares() -> None:
    rows = {f"d{n}.test": 100 for n in range(20)}
    shares = share_domains(rows, lanes=4, per_domain=8)
    assert all(share.limits == (8,) for share in shares.values())
    assert lane_rows(shares, rows, 4) == [500.0] * 4


def test_a_domain_with_most_rows_is_split_and_so_is_its_limit() -> None:
    rows = {"inaturalist.test": 1165, "svampe.test": 165, "artsobs.test": 87, "artportalen.test": 86,
            "observation.test": 58, "laji.test": 10}
    shares = share_domains(rows, lanes=4, per_domain=8)
    big = shares["inaturalist.test"]
    assert big.lanes == (0, 1, 2) and big.limits == (3, 3, 2)  # together the domain's limit of 8
    assert all(len(shares[domain].lanes) == 1 for domain in rows if domain != "inaturalist.test")
    load = lane_rows(shares, rows, 4)
    assert max(load) - min(load) < 200  # without the split, one lane would hold 1165 of 1571 rows


@pytest.mark.parametrize("per_domain", [1, 2, 3, 7])
def test_lanes_together_never_exceed_the_per_domain_limit(per_domain: int) -> None:
    shares = share_domains({"only.test": 10_000}, lanes=4, per_domain=per_domain)
    share = shares["only.test"]
    assert sum(share.limits) == per_domain and min(share.limits) >= 1
    assert len(share.lanes) == len(share.limits) == min(4, per_domain)


def test_lanes_left_without_a_domain_are_dropped() -> None:
    shares = share_domains({"a.test": 5, "b.test": 3}, lanes=4, per_domain=1)
    assert sorted(share.lanes for share in shares.values()) == [(0,), (1,)]


def test_one_lane_gets_everything() -> None:
    shares = share_domains({"a.test": 5, "b.test": 3}, lanes=1, per_domain=4)
    assert {share.lanes for share in shares.values()} == {(0,)}
    assert {share.limits for share in shares.values()} == {(4,)}


@pytest.mark.parametrize(("rows", "cpus", "lanes", "expected"), [
    (5000, 2, 0, 1),  # one lane per two CPUs
    (5000, 8, 0, 4),
    (5000, 7, 0, 4),
    (300, 8, 0, 2),  # no more than one lane per rows_per_lane (200) rows
    (10, 8, 3, 1),
    (5000, 2, 3, 3),  # as set
])
def test_lane_count(monkeypatch: pytest.MonkeyPatch, rows: int, cpus: int, lanes: int, expected: int) -> None:
    monkeypatch.setattr("services.downloader.harvest.engine.available_cpus", lambda: cpus)
    request = HarvestRequest(id="lanes-test-1", dataset="d", version=1, created_at=datetime.now(UTC))
    harvester = Harvester(ObjectStore.from_settings(Settings()), request, DownloaderSettings(lanes=lanes), Blacklist())
    assert harvester._lane_count(rows) == expected


def test_what_a_lane_process_is_sent_survives_pickling() -> None:
    store = ObjectStore.from_settings(Settings(s3_bucket="lane-bucket"))
    config = LaneConfig(harvest_id="h-1", options=HarvestOptions(per_domain=4), settings=DownloaderSettings(),
                        blacklist=Blacklist(), concurrency=8, store_concurrency=4, cpu_threads=2,
                        domain_limits={"big.test": 2})
    copy = pickle.loads(pickle.dumps((config, store)))
    assert copy[0] == config
    assert copy[1].bucket == "lane-bucket" and copy[1].client is not store.client  # connects anew
    row = (RowTask("i1", "http://a.test/1.jpg", "a.test", "Amanita"),
           RowResult(image_id="i1", status=HarvestStatus.failed, error="http-404: gone"))
    assert pickle.loads(pickle.dumps(row)) == row


def test_a_store_not_made_from_settings_refuses_to_travel() -> None:
    made = ObjectStore.from_settings(Settings())
    bare = ObjectStore(made.client, "b")
    with pytest.raises(TypeError, match="from_settings"):
        pickle.dumps(bare)


async def test_a_lane_process_that_raises_fails_with_its_reason() -> None:
    from services.downloader.harvest.lane_runners import LaneFailed, ProcessLane

    config = LaneConfig(harvest_id="h-1", options=HarvestOptions(), settings=DownloaderSettings(),
                        blacklist=Blacklist(), concurrency=8, store_concurrency=4, cpu_threads=0)  # no pool possible
    lane = ProcessLane(config, ObjectStore.from_settings(Settings()), lambda results: None)
    with pytest.raises(LaneFailed, match=r"(?s)stopped: Traceback.*ValueError: max_workers must be greater than 0"):
        await lane.run()


def rows(domain: str, count: int) -> list[RowTask]:
    return [RowTask(f"{domain}-{n}", f"http://{domain}/{n}.jpg", domain, "Amanita") for n in range(count)]


def test_the_feeder_hands_out_domains_in_turn_within_the_windows() -> None:
    feeder = Feeder({"a.test": Share((0,), (2,)), "b.test": Share((0,), (2,))}, lane_window=30)
    for task in rows("a.test", 50) + rows("b.test", 5):
        feeder.add(task)
    batch = feeder.take()[0]
    assert [task.domain for task in batch[:10]] == ["a.test", "b.test"] * 5  # in turn, not a's 50 first
    assert len(batch) == 25 and feeder.out(0) == 25  # b has no more; a stops at its window (2 x 2 + 16 = 20)
    assert feeder.take() == {}  # nothing more until rows come back
    for task in batch[:3]:
        feeder.returned(task)
    assert [task.image_id for task in feeder.take()[0]] == ["a.test-20", "a.test-21"]  # a's window was full


def test_the_feeder_never_gives_a_lane_more_than_its_window() -> None:
    domains = [f"d{n}.test" for n in range(100)]
    feeder = Feeder({domain: Share((0,), (8,)) for domain in domains}, lane_window=64)
    for domain in domains:
        for task in rows(domain, 3):
            feeder.add(task)
    batch = feeder.take()[0]
    assert len(batch) == 64 and len({task.domain for task in batch}) == 64  # one row of each of 64 domains
    feeder.returned(batch[0])
    assert len(feeder.take()[0]) == 1 and feeder.queued() == 300 - 65


def test_a_split_domain_feeds_the_lane_that_returns_rows() -> None:
    feeder = Feeder({"big.test": Share((0, 1), (1, 1))}, lane_window=100)
    for task in rows("big.test", 60):
        feeder.add(task)
    first = feeder.take()
    assert len(first[0]) == len(first[1]) == 18  # 2 x 1 + 16 each
    for task in first[1]:
        feeder.returned(task)  # lane 1 is quicker
    second = feeder.take()
    assert list(second) == [1] and len(second[1]) == 18
    for task in second[1]:
        feeder.returned(task)
    assert len(feeder.take()[1]) == 60 - 54 and feeder.queued() == 0


def test_rows_of_an_idle_domain_make_room_for_the_others() -> None:
    feeder = Feeder({"dead.test": Share((0,), (1,)), "live.test": Share((0,), (1,))}, lane_window=20)
    for task in rows("dead.test", 30) + rows("live.test", 60):
        feeder.add(task)
    first = feeder.take()[0]
    assert len(first) == 20 and {task.domain for task in first} == {"dead.test", "live.test"}
    live = [task for task in first if task.domain == "live.test"]
    for task in live:
        feeder.returned(task)
    refill = feeder.take()[0]
    assert {task.domain for task in refill} == {"dead.test", "live.test"}  # the dead host still takes turns
    for task in (task for task in refill if task.domain == "live.test"):
        feeder.returned(task)
    assert feeder.out(0) == 15  # the dead host's rows
    feeder.set_idle(0, {"dead.test"})  # parked: its 15 rows out no longer count, and it gets no more
    batch = feeder.take()[0]
    assert {task.domain for task in batch} == {"live.test"} and feeder.out(0) == len(batch) == 18
    feeder.set_idle(0, set())  # back: its rows count again (the lane is over its window until rows return)
    assert feeder.out(0) == 33 and feeder.take() == {}
    dead_out = [task for task in first + refill if task.domain == "dead.test"]
    for task in dead_out:
        feeder.returned(task)
    assert feeder.out(0) == 18 and {task.domain for task in feeder.take()[0]} == {"dead.test"}


def test_idle_domains_outside_the_lane_are_ignored() -> None:
    feeder = Feeder({"a.test": Share((0,), (2,)), "b.test": Share((1,), (2,))}, lane_window=10)
    feeder.set_idle(0, {"b.test", "unknown.test"})
    feeder.add(rows("b.test", 1)[0])
    assert list(feeder.take()) == [1]


@pytest.mark.parametrize(("code", "reason"), [
    (-9, "killed by SIGKILL"), (-40, "killed by signal 40"), (3, "exit code 3"), (None, "still running"),
])
def test_how_a_lane_process_ended_is_told(code: int | None, reason: str) -> None:
    from services.downloader.harvest.lane_runners import _exit_reason

    assert _exit_reason(code) == reason


async def test_a_lane_whose_results_cannot_be_taken_stops_and_says_why() -> None:
    from services.downloader.harvest.fetch_lane import FetchLane

    def refuse(task: RowTask, result: RowResult) -> None:
        raise KeyError(task.image_id)

    config = LaneConfig(harvest_id="h-1", options=HarvestOptions(), settings=DownloaderSettings(),
                        blacklist=Blacklist(), concurrency=4, store_concurrency=2, cpu_threads=2)
    lane = FetchLane(config, ObjectStore.from_settings(Settings()), refuse)
    lane.submit([RowTask("i1", "ftp://files.test/1.jpg", "files.test", "Amanita")])  # refused without a request
    lane.finish()
    with pytest.raises(KeyError, match="i1"):
        await lane.run()
