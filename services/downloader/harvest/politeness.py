"""Per-domain politeness shared by every worker of every host, in Redis.

    sporeprint:domain:<domain>:requests              sorted set: one member per request in flight to the
                                                     domain (a lease token), scored by when it expires
    sporeprint:harvest:<id>:domain:<domain>          hash: the harvest's AIMD ``limit`` of the domain and
                                                     ``not_before`` (ms, Redis time): Retry-After and parks

One Lua script keeps each domain's step atomic: ``exchange`` gives leases back and applies what their answers
said (a success adds 1/limit, a 429/503 halves the limit and pauses the domain for Retry-After, host trouble
takes a quarter off, a park (circuit open) pauses it: a 429 seen by one worker slows them all), then drops
expired leases, honours the pause, and hands out as many new leases (up to what the caller wants) as the
domain's limit leaves free, so all workers together never have more than the limit in flight. A worker sends
every domain's exchange in one pipelined round trip per turn of its dispatch loop: the releases of all requests
answered since the last turn and the acquires for every domain with rows waiting, so Redis costs a round trip
per turn, not two per request (with a round trip per acquire and one per release, run on four threads, a
single worker lost about a fifth of its throughput on 2 cores; batched, it harvests as fast as with no Redis
at all: bench/results/harvest.md). A lease lives a few seconds
(``politeness_lease_s``) and the worker that holds it renews it while its request runs (one round trip for all its
leases), so a worker killed with -9 holds its slots only until they expire.

Each worker keeps its own :class:`~services.downloader.harvest.domains.DomainGate` as well (latency, its circuit
breaker, half-open probes); its limit caps what the worker asks for, and the global limit caps all workers.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum

from redis import Redis

logger = logging.getLogger(__name__)

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# One step for one domain: give leases back (applying what their answers said to the shared limit and pause),
# then take as many new ones as the limit leaves free. KEYS: requests zset, state hash.
# ARGV: max limit, state ms, lease ms, want, cap (the caller's own limit), releases n, then (token, event,
# pause ms) per release, then ``want`` new tokens. Returns {granted, ms still paused}.
_EXCHANGE = _NOW + """
local max, lease = tonumber(ARGV[1]), tonumber(ARGV[3])
local want, cap, releases = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local state = redis.call('HMGET', KEYS[2], 'limit', 'not_before')
local limit = tonumber(state[1]) or max
local not_before = tonumber(state[2]) or 0
if releases > 0 then
  for i = 7, 6 + 3 * releases, 3 do
    redis.call('ZREM', KEYS[1], ARGV[i])
    local event = ARGV[i + 1]
    local pause = tonumber(ARGV[i + 2])
    if event == 'ok' then limit = math.min(max, limit + 1 / math.max(limit, 1))
    elseif event == 'throttle' then limit = math.max(1, limit / 2)
    elseif event == 'trouble' then limit = math.max(1, limit * 0.75) end
    if pause > 0 then not_before = math.max(not_before, now + pause) end
  end
  redis.call('HSET', KEYS[2], 'limit', tostring(limit), 'not_before', not_before)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
end
if want <= 0 then return {0, math.max(0, not_before - now)} end
if not_before > now then return {0, not_before - now} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local free = math.max(1, math.min(math.floor(limit), cap)) - redis.call('ZCARD', KEYS[1])
local n = math.min(free, want)
local first = 7 + 3 * releases
for i = 0, n - 1 do redis.call('ZADD', KEYS[1], now + lease, ARGV[first + i]) end
if n > 0 then redis.call('PEXPIRE', KEYS[1], 2 * lease) end
return {math.max(n, 0), 0}
"""

# KEYS: requests zset. ARGV: lease ms, tokens... (only leases still there: an expired one stays expired)
_RENEW = _NOW + """
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[1]))
return 1
"""


class Event(StrEnum):
    """What a request's answer says about its domain."""

    ok = "ok"
    throttle = "throttle"  # 429/503: halve the limit, pause for Retry-After
    trouble = "trouble"  # the host failed (time-out, connection, 5xx): ease off
    park = "park"  # the worker's circuit breaker opened: pause every worker
    none = "none"


@dataclass(frozen=True)
class Grant:
    tokens: list[str]
    wait_s: float  # > 0: the domain is paused for this long


Release = tuple[str, Event, float]  # a lease token, what its request's answer said, the pause it asks for (s)


@dataclass
class Exchange:
    """What a worker asks of one domain in one round trip: leases to give back, and how many new ones it wants
    (``want``, at most ``cap`` of the domain in flight: the worker's own limit, e.g. 1 when half-open)."""

    releases: list[Release] = field(default_factory=list)
    want: int = 0
    cap: int = 1


class GlobalPoliteness:
    """The Redis side of the per-domain gates of one harvest. Calls run on one thread of their own (the sync
    client the project connects with) so that the fetch loop never blocks on Redis; :meth:`exchange`
    does every domain's releases and acquires in one pipelined round trip."""

    def __init__(self, redis: Redis, harvest_id: str, max_limit: int, lease_s: float, state_s: float = 3600) -> None:
        self.redis = redis
        self.harvest_id = harvest_id
        self.max_limit = max_limit
        self.lease_ms = max(1000, int(lease_s * 1000))
        self.state_ms = int(state_s * 1000)
        self._exchange = redis.register_script(_EXCHANGE)
        self._renew = redis.register_script(_RENEW)
        self._prefix = uuid.uuid4().hex[:12]
        self._count = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="politeness")
        self.round_trips = 0  # Redis calls made, and leases granted: what politeness costs per request
        self.granted = 0

    def _keys(self, domain: str) -> list[str]:
        return [f"sporeprint:domain:{domain}:requests", f"sporeprint:harvest:{self.harvest_id}:domain:{domain}"]

    def _tokens(self, n: int) -> list[str]:
        start, self._count = self._count, self._count + n
        return [f"{self._prefix}-{i}" for i in range(start, start + n)]

    def exchange_now(self, asks: dict[str, Exchange]) -> dict[str, Grant]:
        """For each domain: its releases, then its acquire, atomically per domain; all domains in one round
        trip (a pipeline, not a transaction: each domain's step stands alone)."""
        if not asks:
            return {}
        tokens = {domain: self._tokens(max(0, ask.want)) for domain, ask in asks.items()}
        with self.redis.pipeline(transaction=False) as pipe:
            for domain, ask in asks.items():
                args: list[str | int] = [self.max_limit, self.state_ms, self.lease_ms, max(0, ask.want), ask.cap,
                                         len(ask.releases)]
                for token, event, pause_s in ask.releases:
                    args += [token, event.value, int(pause_s * 1000)]
                self._exchange(keys=self._keys(domain), args=[*args, *tokens[domain]], client=pipe)
            self.round_trips += 1
            answers = pipe.execute()
        grants = {}
        for (domain, granted_tokens), (granted, wait_ms) in zip(tokens.items(), answers, strict=True):
            self.granted += int(granted)
            grants[domain] = Grant(granted_tokens[:int(granted)], int(wait_ms) / 1000)
        return grants

    def acquire_now(self, domain: str, want: int, cap: int) -> Grant:
        return self.exchange_now({domain: Exchange(want=want, cap=cap)})[domain]

    def release_now(self, domain: str, leases: list[Release]) -> None:
        self.exchange_now({domain: Exchange(releases=leases)})

    def renew_now(self, leases: dict[str, list[str]]) -> None:
        """Push back the expiry of the leases held (per domain), all in one round trip."""
        if not leases:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for domain, tokens in leases.items():
                self._renew(keys=self._keys(domain)[:1], args=[self.lease_ms, *tokens], client=pipe)
            self.round_trips += 1
            pipe.execute()

    async def renew(self, leases: dict[str, list[str]]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self.renew_now, leases)

    async def exchange(self, asks: dict[str, Exchange]) -> dict[str, Grant]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.exchange_now, asks)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
