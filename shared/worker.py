"""``python -m shared.worker QUEUE [QUEUE...]``: an RQ worker configured from the settings.

The same entry point runs on a laptop, in docker-compose and on a GPU node. Its log lines (``shared.logs``) carry,
while a job runs, the job's id and the id of the request that queued it (``job.meta["request_id"]``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
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
        load_job_code(job)
        # In the worker: what it logs about the job (a killed work horse, a failure it records)
        with job_log_context(job):
            super().execute_job(job, queue)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        # In the work horse, which runs the job (a forked horse inherits the context; this covers any other)
        with job_log_context(job):
            return super().perform_job(job, queue, execution)


def load_job_code(job: Job) -> None:
    """Import the module of the job's function here, in the worker, the first time one of its jobs comes: RQ
    forks a work horse per job, and each later horse starts with the code loaded instead of importing it again
    (0.74 s for a harvest shard). Nothing runs but the import, as the horse would do it; a job whose function
    cannot be loaded is left to the horse, which fails it with the reason."""
    try:
        module = (job.func_name or "").rpartition(".")[0]
        if module and module not in sys.modules:
            importlib.import_module(module)
    except Exception:  # noqa: BLE001 - the work horse meets the same error and records it on the job
        logger.debug("job %s: its code is left to the work horse to load", job.id, exc_info=True)


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
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format, service=f"{'+'.join(args.queues)}-worker")
    connection = redis_connection(settings)
    queues = [get_queue(QueueName(name), connection) for name in args.queues]
    logger.info("worker listening on %s at %s", args.queues, redacted_url(settings.redis_url))
    make_worker(queues, connection, settings).work(burst=args.burst, with_scheduler=True)


if __name__ == "__main__":
    main()
