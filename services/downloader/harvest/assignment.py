"""Which lane fetches which rows: domains shared out over the lanes, and the rows handed to them a few at a time.

The harvest keeps every planned row; a lane holds only what it is working on: per domain at most a window
(twice its limit of requests to the domain, plus 16), and in all at most ``lane_window`` rows. Rows are handed
out one domain after another, so that a lane holds rows of all its domains, and a domain split over lanes feeds
whichever lane finishes its rows first. A domain a lane cannot fetch for now (parked by its circuit breaker)
is idle there: it gets no rows, and the rows it holds do not count against the lane's window, so that a few
dead hosts never fill a lane and stall the live ones.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from services.downloader.harvest.fetch_lane import RowTask


@dataclass(frozen=True)
class Share:
    """The lanes that fetch one domain, and each one's limit of requests in flight to it."""

    lanes: tuple[int, ...]
    limits: tuple[int, ...]


def share_domains(rows: dict[str, int], lanes: int, per_domain: int) -> dict[str, Share]:
    """Spread domains over ``lanes`` so each lane gets about the same number of rows.

    A domain stays in one lane when it fits; a domain with more than a lane's share of the rows (often one
    host serves most of a GBIF download) is split over several lanes, and its ``per_domain`` limit with it,
    so that the lanes together never send it more than ``per_domain`` requests at once. Lanes left without
    a domain are dropped: the lanes of the result are numbered from 0 without gaps."""
    target = sum(rows.values()) / max(1, lanes)
    load = [0.0] * lanes
    shares: dict[str, Share] = {}
    for domain, count in sorted(rows.items(), key=lambda item: (-item[1], item[0])):
        parts = 1
        if count > target and per_domain >= 2:
            parts = min(lanes, per_domain, math.ceil(count / target))
        chosen = sorted(sorted(range(lanes), key=lambda lane: (load[lane], lane))[:parts])
        for lane in chosen:
            load[lane] += count / parts
        base, extra = divmod(per_domain, parts)
        shares[domain] = Share(tuple(chosen), tuple(base + (slot < extra) for slot in range(parts)))
    used = sorted({lane for share in shares.values() for lane in share.lanes})
    number = {lane: new for new, lane in enumerate(used)}
    return {domain: Share(tuple(number[lane] for lane in share.lanes), share.limits)
            for domain, share in shares.items()}


def lane_count(shares: dict[str, Share]) -> int:
    """The lanes the shares use (they are numbered from 0 without gaps)."""
    return 1 + max((lane for share in shares.values() for lane in share.lanes), default=0)


@dataclass(eq=False)
class _Route:
    """One domain: its queued rows, and per lane of its share the rows out there."""

    share: Share
    queue: deque[RowTask] = field(default_factory=deque)
    out: list[int] = field(default_factory=list)
    listed: list[bool] = field(default_factory=list)  # in that lane's rotation
    idle: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out = [0] * len(self.share.lanes)
        self.listed = [False] * len(self.share.lanes)
        self.idle = [False] * len(self.share.lanes)

    def has_room(self, slot: int) -> bool:
        return bool(self.queue) and not self.idle[slot] and self.out[slot] < 2 * self.share.limits[slot] + 16


class Feeder:
    def __init__(self, shares: dict[str, Share], lane_window: int) -> None:
        self.shares = shares
        self.lanes = lane_count(shares)
        self.lane_window = lane_window
        self._routes = {domain: _Route(share) for domain, share in shares.items()}
        self._rotation: list[deque[tuple[_Route, int]]] = [deque() for _ in range(self.lanes)]
        self._out = [0] * self.lanes  # rows out in each lane, in its domains that are not idle
        self._slot_of: dict[str, int] = {}  # image id of a row out -> which of its domain's lanes has it
        self._idle: list[set[str]] = [set() for _ in range(self.lanes)]

    def add(self, task: RowTask) -> None:
        route = self._routes[task.domain]
        route.queue.append(task)
        for slot in range(len(route.share.lanes)):
            self._list(route, slot)

    def returned(self, task: RowTask) -> None:
        """The row's result came back from its lane."""
        route = self._routes[task.domain]
        slot = self._slot_of.pop(task.image_id)
        route.out[slot] -= 1
        if not route.idle[slot]:
            self._out[route.share.lanes[slot]] -= 1
        self._list(route, slot)

    def set_idle(self, lane: int, domains: set[str]) -> None:
        """The domains ``lane`` cannot fetch for now; the others of the lane are fetched again."""
        domains = {domain for domain in domains if domain in self._routes and lane in self.shares[domain].lanes}
        for domain in self._idle[lane] ^ domains:
            route = self._routes[domain]
            slot = route.share.lanes.index(lane)
            route.idle[slot] = domain in domains
            self._out[lane] += -route.out[slot] if route.idle[slot] else route.out[slot]
            self._list(route, slot)
        self._idle[lane] = domains

    def take(self) -> dict[int, list[RowTask]]:
        """Rows to hand out now, per lane: one domain after another, while the lane has room."""
        batches: dict[int, list[RowTask]] = {}
        for lane, rotation in enumerate(self._rotation):
            batch: list[RowTask] = []
            while rotation and self._out[lane] < self.lane_window:
                route, slot = rotation.popleft()
                if not route.has_room(slot):  # idle now, or another lane of a split domain emptied its queue
                    route.listed[slot] = False
                    continue
                task = route.queue.popleft()
                route.out[slot] += 1
                self._out[lane] += 1
                self._slot_of[task.image_id] = slot
                batch.append(task)
                if route.has_room(slot):
                    rotation.append((route, slot))
                else:
                    route.listed[slot] = False
            if batch:
                batches[lane] = batch
        return batches

    def out(self, lane: int) -> int:
        return self._out[lane]

    def queued(self) -> int:
        return sum(len(route.queue) for route in self._routes.values())

    def _list(self, route: _Route, slot: int) -> None:
        if not route.listed[slot] and route.has_room(slot):
            route.listed[slot] = True
            self._rotation[route.share.lanes[slot]].append((route, slot))


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
