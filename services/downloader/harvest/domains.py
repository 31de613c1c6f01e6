"""Per-domain politeness: an adaptive concurrency limit, pauses on 429/503, and a circuit breaker.

AIMD like TCP: each success adds 1/limit (about +1 per window of successes); a throttle halves the
limit and pauses the domain for Retry-After; latency far above the domain's best or errors shrink it.
A run of failures parks the domain (circuit open) for ``park_s``, doubling each time; after the pause
one probe request is let through (half-open); after ``max_parks`` the domain is given up on.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

_EWMA = 0.2


@dataclass
class DomainGate:
    name: str
    max_limit: int
    breaker_failures: int
    park_s: float
    max_parks: int
    limit: float = 0.0
    in_flight: int = 0
    not_before: float = 0.0
    consecutive_failures: int = 0
    parks: int = 0
    half_open: bool = False
    given_up: bool = False
    latency_ewma: float | None = None
    best_latency: float | None = None
    queue: deque[Any] = field(default_factory=deque)
    ok: int = 0
    failed: int = 0
    throttled: int = 0

    def __post_init__(self) -> None:
        self.limit = float(self.max_limit)

    @property
    def allowed(self) -> int:
        return 1 if self.half_open else max(1, int(self.limit))

    def ready(self, now: float) -> bool:
        return bool(self.queue) and not self.given_up and now >= self.not_before and self.in_flight < self.allowed

    def on_success(self, latency_s: float) -> None:
        self.ok += 1
        self.consecutive_failures = 0
        if self.half_open:
            logger.info("domain %s answered again: circuit closed", self.name)
            self.half_open = False
            self.limit = max(1.0, self.max_limit / 2)
        self._observe_latency(latency_s)
        if self.best_latency is not None and self.latency_ewma is not None and \
                self.latency_ewma > max(4 * self.best_latency, self.best_latency + 1.0):
            self.limit = max(1.0, self.limit * 0.9)  # the host is getting slower: ease off
        else:
            self.limit = min(float(self.max_limit), self.limit + 1.0 / max(self.limit, 1.0))

    def on_throttle(self, now: float, pause_s: float) -> None:
        """429/503: halve the limit and pause the whole domain."""
        self.throttled += 1
        self.limit = max(1.0, self.limit / 2)
        self.not_before = max(self.not_before, now + pause_s)

    def on_failure(self, now: float, host_trouble: bool) -> None:
        self.failed += 1
        if not host_trouble:
            return
        self.consecutive_failures += 1
        self.limit = max(1.0, self.limit * 0.75)
        if self.half_open or self.consecutive_failures >= self.breaker_failures:
            self.park(now)

    def park(self, now: float) -> None:
        self.parks += 1
        self.consecutive_failures = 0
        if self.parks > self.max_parks:
            self.given_up = True
            logger.warning("domain %s failed %d times in a row after %d parks: giving up on it",
                           self.name, self.breaker_failures, self.max_parks)
            return
        pause = self.park_s * 2 ** (self.parks - 1)
        self.not_before = max(self.not_before, now + pause)
        self.half_open = True
        logger.warning("domain %s parked for %.1f s (circuit open, park %d/%d)", self.name, pause, self.parks,
                       self.max_parks)

    def _observe_latency(self, latency_s: float) -> None:
        self.latency_ewma = latency_s if self.latency_ewma is None else \
            (1 - _EWMA) * self.latency_ewma + _EWMA * latency_s
        if self.best_latency is None or self.latency_ewma < self.best_latency:
            self.best_latency = self.latency_ewma

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "limit": self.allowed, "in_flight": self.in_flight, "queued": len(self.queue), "ok": self.ok,
            "failed": self.failed, "throttled": self.throttled, "parks": self.parks,
            "parked_for_s": round(max(0.0, self.not_before - now), 1), "given_up": self.given_up,
            "latency_ms": round(self.latency_ewma * 1000) if self.latency_ewma is not None else None,
        }
