"""How a harvest's rows are split into shards: RQ jobs on queue ``harvest`` that any worker takes."""

from __future__ import annotations

from services.downloader.harvest.fetcher import RowTask


def split_into_shards(tasks: list[RowTask], shard_rows: int) -> list[list[str]]:
    """The image ids of ``tasks`` in shards of at most ``shard_rows``, one domain's rows together: a domain
    fills shards one after another (a big one spans a few shards, small ones share one), so that a shard
    fetches from few domains and a domain is fetched by few shards at once. The shards come out interleaved
    (the first shard of every domain, then the second of each, ...): the first ones queued, which workers
    take at once, fetch from different hosts instead of queueing on one host's politeness limit."""
    by_domain: dict[str, list[str]] = {}
    for task in tasks:
        by_domain.setdefault(task.domain, []).append(task.image_id)
    shards: list[tuple[int, list[str]]] = []  # (its place in its first domain's run, ids)
    current: list[str] = []
    place = 0
    for domain in sorted(by_domain, key=lambda name: (-len(by_domain[name]), name)):
        run = 0
        for image_id in by_domain[domain]:
            if not current:  # a shard starts: its place is how many this domain started before
                place, run = run, run + 1
            current.append(image_id)
            if len(current) >= shard_rows:
                shards.append((place, current))
                current = []
    if current:
        shards.append((place, current))
    return [ids for _, ids in sorted(shards, key=lambda shard: shard[0])]
