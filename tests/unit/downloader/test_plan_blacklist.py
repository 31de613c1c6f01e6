"""A harvest's shards and merge obey the blacklist its plan read (saved in the plan): they do not ask the curator
again, once per shard, and a change of the blacklist mid-harvest does not split the harvest's rows."""

from __future__ import annotations

import pytest

import services.downloader.jobs as jobs
from services.downloader.core.config import DownloaderSettings
from shared.curation import Blacklist, seed_blacklist
from shared.settings import Settings


def step() -> jobs._Step:
    # nothing here connects: the store and Redis clients are created, never used
    return jobs._Step("0123456789abcdef0123456789abcdef", 1, Settings(curator_url="http://127.0.0.1:9", redis_url="redis://127.0.0.1:9/0"))


def test_a_plan_with_a_blacklist_is_obeyed_without_the_curator(monkeypatch: pytest.MonkeyPatch) -> None:
    async def asked(*args: object, **kwargs: object) -> tuple[Blacklist, str]:
        raise AssertionError("the curator was asked although the plan holds the blacklist")

    monkeypatch.setattr(jobs, "load_blacklist", asked)
    saved = seed_blacklist().model_copy(update={"revision": 41})
    plan = {"shards": [["a"]], "progress": {"blacklist": "curator"}, "blacklist": saved.model_dump(mode="json")}
    blacklist, origin = step().blacklist(DownloaderSettings(), plan)
    assert (blacklist, origin) == (saved, "curator")


def test_a_plan_saved_without_one_reads_todays(monkeypatch: pytest.MonkeyPatch) -> None:
    today = Blacklist(revision=7)

    async def load(*args: object, **kwargs: object) -> tuple[Blacklist, str]:
        return today, "cache"

    monkeypatch.setattr(jobs, "load_blacklist", load)
    assert step().blacklist(DownloaderSettings(), {"shards": [], "progress": {}}) == (today, "cache")
    assert step().blacklist(DownloaderSettings()) == (today, "cache")
