"""Per-domain politeness shared by every worker of every host, in Redis.

    sporeprint:domain:<domain>:requests              sorted set: one member per request in flight to the
                                                     domain (a lease token), scored by when it expires
    sporeprint:harvest:<id>:domain:<domain>          hash: the harvest's AIMD ``limit`` of the domain and
                                                     ``not_before`` (ms, Redis time): Retry-After and parks

Two Lua scripts keep each step atomic. ``acquire`` drops expired leases, honours the pause, and hands out as
many leases (up to what the caller wants) as the domain's limit leaves free, so all workers together never
have more than the limit in flight. A lease lives a few seconds (``politeness_lease_s``) and the lane that
holds it renews it while its request runs (one round trip for all its leases), so a worker killed with -9 holds
its slots only until they expire. ``release`` gives leases back and applies what their answers said: a success
adds 1/limit, a 429/503 halves the limit and pauses the domain for Retry-After, host trouble takes a quarter
off, a park (circuit open) pauses it: a 429 seen by one worker slows them all. One round trip each, for a
batch of leases of one domain.

Each lane keeps its own :class:`~services.downloader.harvest.domains.DomainGate` as well (latency, its circuit
breaker, half-open probes); its limit caps what the lane asks for, and the global limit caps all lanes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

from redis import Redis

logger = logging.getLogger(__name__)

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: requests zset, state hash. ARGV: want, cap (the caller's own limit), max limit, lease ms, tokens...
_ACQUIRE = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local state = redis.call('HMGET', KEYS[2], 'limit', 'not_before')
local not_before = tonumber(state[2]) or 0
if not_before > now then return {0, not_before - now} end
local limit = math.min(math.floor(tonumber(state[1]) or tonumber(ARGV[3])), tonumber(ARGV[2]))
local free = math.max(1, limit) - redis.call('ZCARD', KEYS[1])
local n = math.min(free, tonumber(ARGV[1]))
for i = 1, n do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[4 + i]) end
if n > 0 then redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[4])) end
return {math.max(n, 0), 0}
"""

# KEYS: requests zset, state hash. ARGV: max limit, state ms, then (token, event, pause ms) per lease.
_RELEASE = _NOW + """
local max = tonumber(ARGV[1])
local state = redis.call('HMGET', KEYS[2], 'limit', 'not_before')
local limit = tonumber(state[1]) or max
local not_before = tonumber(state[2]) or 0
for i = 3, #ARGV, 3 do
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
return 1
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
    park = "park"  # the lane's circuit breaker opened: pause every worker
    none = "none"


@dataclass(frozen=True)
class Grant:
    tokens: list[str]
    wait_s: float  # > 0: the domain is paused for this long


class GlobalPoliteness:
    """The Redis side of the per-domain gates of one harvest. Calls run on a small thread pool (the sync client
    the project connects with) so that the lane's event loop never blocks on Redis."""

    def __init__(self, redis: Redis, harvest_id: str, max_limit: int, lease_s: float, state_s: float = 3600) -> None:
        self.redis = redis
        self.harvest_id = harvest_id
        self.max_limit = max_limit
        self.lease_ms = max(1000, int(lease_s * 1000))
        self.state_ms = int(state_s * 1000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._renew = redis.register_script(_RENEW)
        self._prefix = uuid.uuid4().hex[:12]
        self._count = 0
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="politeness")
        self.round_trips = 0  # Redis calls made, and leases granted: what politeness costs per request
        self.granted = 0

    def _keys(self, domain: str) -> list[str]:
        return [f"sporeprint:domain:{domain}:requests", f"sporeprint:harvest:{self.harvest_id}:domain:{domain}"]

    def _tokens(self, n: int) -> list[str]:
        start, self._count = self._count, self._count + n
        return [f"{self._prefix}-{i}" for i in range(start, start + n)]

    def acquire_now(self, domain: str, want: int, cap: int) -> Grant:
        tokens = self._tokens(want)
        self.round_trips += 1
        granted, wait_ms = self._acquire(keys=self._keys(domain),
                                         args=[want, cap, self.max_limit, self.lease_ms, *tokens])
        self.granted += int(granted)
        return Grant(tokens[:int(granted)], int(wait_ms) / 1000)

    def release_now(self, domain: str, leases: list[tuple[str, Event, float]]) -> None:
        args: list[str | int] = [self.max_limit, self.state_ms]
        for token, event, pause_s in leases:
            args += [token, event.value, int(pause_s * 1000)]
        self.round_trips += 1
        self._release(keys=self._keys(domain), args=args)

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

    async def acquire(self, domain: str, want: int, cap: int) -> Grant:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.acquire_now, domain, want, cap)

    async def release(self, domain: str, leases: list[tuple[str, Event, float]]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self.release_now, domain, leases)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
