"""Splitting a harvest into shards, and summing the shards' progress."""

from __future__ import annotations

from services.downloader.api.routes.harvests import harvest_progress
from services.downloader.harvest.assignment import split_into_shards
from services.downloader.harvest.fetcher import RowTask


def tasks(domain: str, count: int) -> list[RowTask]:
    return [RowTask(f"{domain}-{n}", f"http://{domain}/{n}.jpg", domain, "Amanita muscaria") for n in range(count)]


def test_shards_keep_a_domain_together_and_interleave_domains() -> None:
    rows = tasks("a.test", 700) + tasks("b.test", 500) + tasks("c.test", 30) + tasks("d.test", 20)
    shards = split_into_shards(rows, 250)
    assert sorted(image_id for shard in shards for image_id in shard) == sorted(t.image_id for t in rows)
    assert all(len(shard) <= 250 for shard in shards)
    domains = [{image_id.split("-")[0] for image_id in shard} for shard in shards]
    assert sum("a.test" in shard for shard in domains) == 3  # 700 rows: three shards, not every one
    assert sum("b.test" in shard for shard in domains) == 3  # 500 rows, from the end of a shard of a.test on
    assert domains[0] == {"a.test"} and domains[1] == {"b.test"}  # the first shards hit different hosts
    assert any(shard >= {"c.test", "d.test"} for shard in domains)  # small domains share a shard


def test_no_rows_no_shards() -> None:
    assert split_into_shards([], 100) == []


def test_progress_sums_the_shards_over_the_plan() -> None:
    plan = {"rows": 100, "total": 100, "done": 10, "resumed": 10, "ok": 10, "failed": 0, "skipped": 2,
            "skipped_by_reason": {"blacklisted": 2}, "remaining": 90, "images_per_s": 0.0}
    shards = [{"done": 30, "ok": 28, "failed": 2, "failed_by_reason": {"timeout": 2}, "images_per_s": 10.0,
               "in_flight": 3, "domains_parked": ["x.test"], "elapsed_s": 3.0},
              {"done": 20, "ok": 20, "images_per_s": 5.0, "in_flight": 2, "elapsed_s": 4.0}]
    total = harvest_progress(plan, shards)
    assert (total["done"], total["ok"], total["failed"], total["remaining"]) == (60, 58, 2, 40)
    assert total["failed_by_reason"] == {"timeout": 2} and total["skipped_by_reason"] == {"blacklisted": 2}
    assert (total["in_flight"], total["images_per_s"]) == (5, 15.0)
    assert total["domains_parked"] == ["x.test"] and total["elapsed_s"] == 4.0
    assert total["eta_s"] == round(40 / 15.0, 1)
