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


class JobState(StrEnum):
    """The state of a long job (a harvest, a curation, a training run), one spelling for every service.

    The curator's curations and the trainer's jobs go queued -> running -> completed | failed, and a training
    job may end cancelled. The downloader's harvests use every state: ``interrupted`` (its worker died; resume
    it) and ``cancelling`` (a cancel was asked, the harvest is checkpointing) are its intermediate states.
    """

    queued = "queued"
    running = "running"
    interrupted = "interrupted"
    cancelling = "cancelling"
    cancelled = "cancelled"
    completed = "completed"
    failed = "failed"


# A job in one of these states will not change state again (a client stops polling).
TERMINAL_STATES: frozenset[JobState] = frozenset({JobState.completed, JobState.failed, JobState.cancelled})


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
