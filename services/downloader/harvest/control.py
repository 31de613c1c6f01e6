"""Coordination of a harvest through Redis: which RQ job runs it, a lease so only one worker runs it
at a time, and a cancel flag the running harvest polls."""

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
        prefix = f"sporeprint:harvest:{harvest_id}"
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

    def next_attempt(self) -> int:
        return int(self.redis.incr(self.attempts_key))

    # lease
    def acquire(self, token: str, ttl_s: int) -> bool:
        return bool(self.redis.set(self.lease_key, token, nx=True, ex=ttl_s))

    def renew(self, token: str, ttl_s: int) -> bool:
        return bool(self.redis.eval(_RENEW, 1, self.lease_key, token, ttl_s))

    def release(self, token: str) -> None:
        self.redis.eval(_RELEASE, 1, self.lease_key, token)

    def leased(self) -> bool:
        return bool(self.redis.exists(self.lease_key))

    # cancellation
    def request_cancel(self) -> None:
        self.redis.set(self.cancel_key, "1", ex=7 * 24 * 3600)

    def cancel_requested(self) -> bool:
        return bool(self.redis.exists(self.cancel_key))
