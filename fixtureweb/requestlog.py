"""Thread-safe request counters, so tests can assert "fetched exactly once", and the most requests each domain
had in flight at once, so they can assert politeness ("never more than per_domain")."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: Counter[tuple[str, str]] = Counter()
        self._statuses: Counter[tuple[str, int]] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._max_in_flight: Counter[str] = Counter()

    def hit(self, domain: str, path: str) -> int:
        """Count a request; returns how many times (domain, path) has been asked for, this one included."""
        with self._lock:
            self._paths[(domain, path)] += 1
            return self._paths[(domain, path)]

    def entered(self, domain: str) -> None:
        """A request to ``domain`` arrived (each is matched by one :meth:`left`)."""
        with self._lock:
            self._in_flight[domain] += 1
            self._max_in_flight[domain] = max(self._max_in_flight[domain], self._in_flight[domain])

    def left(self, domain: str) -> None:
        with self._lock:
            self._in_flight[domain] -= 1

    def max_in_flight(self) -> dict[str, int]:
        """Per domain: the most requests it was answering at once."""
        with self._lock:
            return dict(self._max_in_flight)

    def status(self, domain: str, status: int) -> None:
        with self._lock:
            self._statuses[(domain, status)] += 1

    def count(self, domain: str | None = None, path: str | None = None) -> int:
        """Requests received, optionally for one domain and/or one path (without query string)."""
        with self._lock:
            return sum(n for (d, p), n in self._paths.items()
                       if (domain is None or d == domain) and (path is None or p == path))

    def by_domain(self) -> dict[str, int]:
        with self._lock:
            out: Counter[str] = Counter()
            for (d, _), n in self._paths.items():
                out[d] += n
            return dict(out)

    def statuses(self, domain: str | None = None) -> dict[int, int]:
        with self._lock:
            out: Counter[int] = Counter()
            for (d, s), n in self._statuses.items():
                if domain is None or d == domain:
                    out[s] += n
            return dict(out)

    def max_per_path(self) -> int:
        with self._lock:
            return max(self._paths.values(), default=0)

    def reset(self) -> None:
        with self._lock:
            self._paths.clear()
            self._statuses.clear()
            self._max_in_flight = Counter(self._in_flight)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            paths: dict[str, dict[str, int]] = {}
            for (d, p), n in self._paths.items():
                paths.setdefault(d, {})[p] = n
            statuses: dict[str, dict[str, int]] = {}
            for (d, s), n in self._statuses.items():
                statuses.setdefault(d, {})[str(s)] = n
            return {"total": sum(self._paths.values()), "paths": paths, "statuses": statuses,
                    "max_in_flight": dict(self._max_in_flight)}
