"""Coordination of a harvest through Redis: which RQ job plans it (its attempt), leases so only one worker runs
each of its steps at a time (the plan and the merge hold the harvest's lease, each shard its own), the shards of
the current attempt, and a cancel flag every running shard polls.

    sporeprint:harvest:<id>:job                 the plan job of the current attempt (``<id>-<attempt>``)
    sporeprint:harvest:<id>:attempts            attempt counter
    sporeprint:harvest:<id>:lease               plan / merge lease (token, expiry)
    sporeprint:harvest:<id>:lease:<shard>       one shard's lease
    sporeprint:harvest:<id>:shards:<attempt>    how many shards the attempt has
    sporeprint:harvest:<id>:cancel              cancel requested
"""

from __future__ import annotations

from redis import Redis

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) else return 0 end
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


class HarvestControl:
    def __init__(self, redis: Redis, harvest_id: str) -> None:
        self.redis = redis
        self.id = harvest_id
        prefix = self.prefix = f"sporeprint:harvest:{harvest_id}"
        self.lease_key = f"{prefix}:lease"
        self.cancel_key = f"{prefix}:cancel"
        self.job_key = f"{prefix}:job"
        self.attempts_key = f"{prefix}:attempts"

    # the RQ job currently in charge of the harvest (a resume enqueues a new one)
    def set_job(self, job_id: str) -> None:
        self.redis.set(self.job_key, job_id)

    def job_id(self) -> str | None:
        value = self.redis.get(self.job_key)
        return value.decode() if isinstance(value, bytes) else value

    def shard_lease_key(self, shard: str) -> str:
        return f"{self.lease_key}:{shard}"

    def set_shards(self, attempt: int, count: int) -> None:
        self.redis.set(f"{self.prefix}:shards:{attempt}", count, ex=30 * 24 * 3600)

    def shards(self, attempt: int) -> int:
        value = self.redis.get(f"{self.prefix}:shards:{attempt}")
        return int(value) if value is not None else 0

    def next_attempt(self) -> int:
        return int(self.redis.incr(self.attempts_key))

    # leases (``key``: the harvest's by default, or a shard's)
    def acquire(self, token: str, ttl_s: int, key: str | None = None) -> bool:
        return bool(self.redis.set(key or self.lease_key, token, nx=True, ex=ttl_s))

    def renew(self, token: str, ttl_s: int, key: str | None = None) -> bool:
        return bool(self.redis.eval(_RENEW, 1, key or self.lease_key, token, ttl_s))

    def release(self, token: str, key: str | None = None) -> None:
        self.redis.eval(_RELEASE, 1, key or self.lease_key, token)

    def leased(self, shards: list[str] | None = None) -> bool:
        """Whether a worker holds the harvest's lease or one of ``shards``'."""
        return bool(self.redis.exists(self.lease_key, *(self.shard_lease_key(shard) for shard in shards or [])))

    # cancellation
    def request_cancel(self) -> None:
        self.redis.set(self.cancel_key, "1", ex=7 * 24 * 3600)

    def cancel_requested(self) -> bool:
        return bool(self.redis.exists(self.cancel_key))

    def stop_requested(self, job_id: str) -> bool:
        """Cancel requested, or ``job_id`` (a plan job) is no longer the current attempt: one round trip."""
        cancel, current = self.redis.mget(self.cancel_key, self.job_key)
        current = current.decode() if isinstance(current, bytes) else current
        return cancel is not None or (current is not None and current != job_id)
