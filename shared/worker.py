"""``python -m shared.worker QUEUE [QUEUE...]``: an RQ worker configured from the settings.

The same entry point runs on a laptop, in docker-compose and on a GPU node. Its log lines (``shared.logs``) carry,
while a job runs, the job's id and the id of the request that queued it (``job.meta["request_id"]``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.executions import Execution
from rq.job import Job

from shared.logs import configure_logging, log_context
from shared.queue import JobSerializer, QueueName, get_queue, redacted_url, redis_connection
from shared.settings import Settings, get_settings

logger = logging.getLogger(__name__)


class SporeprintWorker(Worker):
    """An RQ worker that notices a dead worker's job within seconds instead of minutes.

    RQ counts a started job as abandoned once its heartbeat (every ``job_monitoring_interval``) has been
    silent for a fixed 60 s more, and only looks for abandoned jobs every 10 minutes; both come from
    the settings here (``worker_*``), so a harvest whose worker was killed is retried by another worker
    about ``worker_abandoned_after_s + worker_maintenance_s`` later.
    """

    def __init__(self, *args: Any, abandoned_after_s: int = 60, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.abandoned_after_s = abandoned_after_s

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        rq_default = super().get_heartbeat_ttl(job, working_time)  # ends 60 s after the next heartbeat is due
        return max(1, rq_default - 60 + self.abandoned_after_s)

    def execute_job(self, job: Job, queue: Queue) -> None:
        # In the worker: what it logs about the job (a killed work horse, a failure it records)
        with job_log_context(job):
            super().execute_job(job, queue)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        # In the work horse, which runs the job (a forked horse inherits the context; this covers any other)
        with job_log_context(job):
            return super().perform_job(job, queue, execution)


@contextmanager
def job_log_context(job: Job) -> Iterator[None]:
    """Log lines within carry the job's id and the id of the request that queued it."""
    request_id = job.meta.get("request_id")
    with log_context(request_id=request_id if isinstance(request_id, str) else None, job_id=job.id):
        yield


def make_worker(queues: list[Queue], connection: Redis, settings: Settings) -> SporeprintWorker:
    return SporeprintWorker(
        queues, connection=connection, serializer=JobSerializer, job_monitoring_interval=settings.worker_heartbeat_s,
        abandoned_after_s=settings.worker_abandoned_after_s, maintenance_interval=settings.worker_maintenance_s,
        # an idle worker waits on the queue at most worker_ttl - 15 s before its next maintenance check
        worker_ttl=settings.worker_maintenance_s + 15,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="sporeprint RQ worker")
    parser.add_argument("queues", nargs="+", choices=[name.value for name in QueueName])
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--preload", action="append", default=[], metavar="MODULE",
                        help="import MODULE once before the first job (repeatable): RQ forks a work horse per job, "
                             "and each then starts with the job's code loaded instead of importing it again")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format, service=f"{'+'.join(args.queues)}-worker")
    for module in args.preload:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            parser.error(f"--preload {module}: {exc}")
    connection = redis_connection(settings)
    queues = [get_queue(QueueName(name), connection) for name in args.queues]
    logger.info("worker listening on %s at %s", args.queues, redacted_url(settings.redis_url))
    make_worker(queues, connection, settings).work(burst=args.burst, with_scheduler=True)


if __name__ == "__main__":
    main()
