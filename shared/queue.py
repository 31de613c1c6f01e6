"""Redis + RQ: the queues long jobs run on, and how they report progress.

Queue names: ``harvest`` (downloader), ``curate`` (curator), ``train`` (the GPU worker).
A job reports progress by saving a dict under ``job.meta["progress"]``; the API reads it back.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from redis import Redis
from rq import Queue, get_current_job
from rq.job import Job

from shared.settings import Settings

logger = logging.getLogger(__name__)


class QueueName(StrEnum):
    harvest = "harvest"
    curate = "curate"
    train = "train"


def redis_connection(settings: Settings) -> Redis:
    return Redis.from_url(settings.redis_url)


def get_queue(name: QueueName, connection: Redis) -> Queue:
    return Queue(name.value, connection=connection)


def report_progress(**progress: Any) -> None:
    """Merge ``progress`` into the current RQ job's meta (no-op outside a job, e.g. in tests)."""
    job = get_current_job()
    if job is None:
        return
    job.meta.setdefault("progress", {}).update(progress)
    job.save_meta()


def job_progress(job: Job) -> dict[str, Any]:
    job.refresh()
    return dict(job.meta.get("progress", {}))
