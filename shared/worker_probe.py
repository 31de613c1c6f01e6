"""``python -m shared.worker_probe``: a liveness probe for the RQ worker of this container (Kubernetes exec probe).

Exit 0 when an RQ worker registered from this host name (the pod's name) has sent a heartbeat to Redis recently,
1 otherwise. An RQ worker heartbeats before each wait on its queues (every ``worker_maintenance_s`` when idle,
shared.worker) and every ``worker_heartbeat_s`` while a job runs; RQ itself gives up on a worker whose heartbeat
is ``worker_ttl + 60`` s old, and so does this probe: a wedged worker is restarted, a busy one is not.

Redis out of reach is not the worker's fault and a restart would not mend it: the probe then passes (the worker
reconnects by itself), saying so on stderr.
"""

from __future__ import annotations

import argparse
import socket
import sys
from datetime import UTC, datetime

from redis import Redis
from redis.exceptions import RedisError
from rq import Worker

from shared.queue import redis_connection
from shared.settings import Settings, get_settings

REDIS_TIMEOUT_S = 5.0


def max_heartbeat_age_s(settings: Settings) -> int:
    """RQ's own limit: worker_ttl (shared.worker: worker_maintenance_s + 15) + 60."""
    return settings.worker_maintenance_s + 15 + 60


def heartbeat_age_s(connection: Redis, hostname: str, now: datetime | None = None) -> float | None:
    """Seconds since the newest heartbeat of a worker registered from ``hostname``; None when there is none."""
    now = now or datetime.now(UTC)
    ages = [(now - worker.last_heartbeat.replace(tzinfo=UTC)).total_seconds()
            for worker in Worker.all(connection=connection)
            if worker.hostname == hostname and worker.last_heartbeat is not None]
    return min(ages) if ages else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="exit 0 when this host's RQ worker heartbeat is recent")
    parser.add_argument("--max-age", type=float, help="seconds (default: RQ's worker_ttl + 60)")
    parser.add_argument("--hostname", default=socket.gethostname(), help="the worker's host (default: this one)")
    args = parser.parse_args(argv)
    settings = get_settings()
    limit = args.max_age if args.max_age is not None else max_heartbeat_age_s(settings)
    try:
        age = heartbeat_age_s(redis_connection(settings, timeout_s=REDIS_TIMEOUT_S), args.hostname)
    except RedisError as exc:
        sys.stderr.write(f"Redis out of reach ({type(exc).__name__}): not the worker's fault, passing\n")
        return 0
    if age is None:
        sys.stderr.write(f"no RQ worker of host {args.hostname} is registered in Redis\n")
        return 1
    if age > limit:
        sys.stderr.write(f"the RQ worker of host {args.hostname} last sent a heartbeat {age:.0f} s ago "
                         f"(limit {limit:.0f} s)\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
