"""Training jobs on the RQ queue ``train``: ids, enqueueing, state, logs, cancellation and sweeps (Redis side).

A job's id is also its model id (``models/<id>/``), so a job can always be found in the registry, even after
Redis has forgotten it. The worker writes progress into ``job.meta["progress"]`` and its log lines into a
capped Redis list that the API tails.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from shared.queue import TERMINAL_STATES, JobState, QueueName, get_queue
from shared.training import TrainingJobSpec

logger = logging.getLogger(__name__)

KEY_PREFIX = "sporeprint:trainer"
LOG_LINES = 500
KEEP_SECONDS = 30 * 24 * 3600  # finished and failed jobs stay visible for a month


_RQ_STATES = {
    JobStatus.QUEUED: JobState.queued,
    JobStatus.DEFERRED: JobState.queued,
    JobStatus.SCHEDULED: JobState.queued,
    JobStatus.STARTED: JobState.running,
    JobStatus.FINISHED: JobState.completed,
    JobStatus.FAILED: JobState.failed,
    JobStatus.STOPPED: JobState.cancelled,
    JobStatus.CANCELED: JobState.cancelled,
}


class JobNotFound(LookupError):
    pass


class JobConflict(RuntimeError):
    pass


def new_job_id(prefix: str = "m") -> str:
    return f"{prefix}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def log_key(job_id: str) -> str:
    return f"{KEY_PREFIX}:log:{job_id}"


def cancel_key(job_id: str) -> str:
    return f"{KEY_PREFIX}:cancel:{job_id}"


def sweep_key(sweep_id: str) -> str:
    return f"{KEY_PREFIX}:sweep:{sweep_id}"


SWEEP_INDEX = f"{KEY_PREFIX}:sweeps"


def enqueue_training(connection: Redis, spec: TrainingJobSpec, job_timeout: int, job_id: str | None = None) -> Job:
    """Put a pinned spec on the ``train`` queue; the job id is the future model id."""
    if spec.data.manifest_version is None:
        raise ValueError("pin the manifest version before enqueueing")
    job_id = job_id or new_job_id()
    queue = get_queue(QueueName.train, connection)
    return queue.enqueue(
        "services.trainer.worker.run_training_job", job_id, spec.model_dump(mode="json"),
        job_id=job_id, job_timeout=job_timeout, result_ttl=KEEP_SECONDS, failure_ttl=KEEP_SECONDS,
        meta={"spec": spec.model_dump(mode="json"), "progress": {"stage": "queued"}},
        description=spec.name or f"train {spec.backbone.name.value} on {spec.data.dataset}",
    )


def fetch(connection: Redis, job_id: str) -> Job:
    try:
        return Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        raise JobNotFound(job_id) from None


def state_of(job: Job) -> JobState:
    status = job.get_status(refresh=False)
    return _RQ_STATES.get(status, JobState.queued) if status is not None else JobState.queued


def log_tail(connection: Redis, job_id: str, lines: int = 50) -> list[str]:
    raw: list[bytes | str] = connection.lrange(log_key(job_id), -lines, -1)
    return [line.decode(errors="replace") if isinstance(line, bytes) else line for line in raw]


def train_job_ids(connection: Redis) -> list[str]:
    queue = get_queue(QueueName.train, connection)
    ids = list(queue.get_job_ids())
    for registry in (queue.started_job_registry, queue.finished_job_registry, queue.failed_job_registry,
                     queue.canceled_job_registry, queue.deferred_job_registry, queue.scheduled_job_registry):
        ids.extend(registry.get_job_ids())
    return list(dict.fromkeys(ids))


def cancel(connection: Redis, job_id: str) -> JobState:
    """Cancel a queued job, or stop a running one (its worker kills the work horse at once)."""
    job = fetch(connection, job_id)
    state = state_of(job)
    if state in TERMINAL_STATES:
        raise JobConflict(f"job is already {state.value}")
    connection.set(cancel_key(job_id), "1", ex=KEEP_SECONDS)
    if state is JobState.queued:
        job.cancel()
        return JobState.cancelled
    try:
        send_stop_job_command(connection, job_id)
    except InvalidJobOperation:  # between dequeue and start: the worker sees the cancel flag after an epoch
        logger.info("job %s not executing yet; cancel flag set", job_id)
    return JobState.cancelled


def requeue(connection: Redis, job_id: str, force: bool = False) -> Job:
    """Run a failed job again, or (force) one whose worker died while it ran; it resumes from its checkpoint."""
    job = fetch(connection, job_id)
    status = job.get_status()
    if status in (JobStatus.STOPPED, JobStatus.CANCELED) or connection.exists(cancel_key(job_id)):
        raise JobConflict("job was canceled; submit it again instead")
    progress = job.meta.get("progress", {})
    progress.pop("error", None)
    progress["stage"] = "requeued"
    job.save_meta()
    if status is JobStatus.FAILED:
        return job.requeue()
    if status is JobStatus.STARTED:
        if not force:
            raise JobConflict("job is running; pass force=true only if its worker died")
        queue = get_queue(QueueName.train, connection)
        StartedJobRegistry(queue=queue).remove_executions(job)
        return queue.enqueue_job(job)
    raise JobConflict(f"job is {status.value if status else 'unknown'}; only failed or orphaned jobs are requeued")


def save_sweep(connection: Redis, sweep_id: str, record: dict[str, Any]) -> None:
    connection.set(sweep_key(sweep_id), json.dumps(record, default=str), ex=KEEP_SECONDS)
    connection.zadd(SWEEP_INDEX, {sweep_id: datetime.now(UTC).timestamp()})


def load_sweep(connection: Redis, sweep_id: str) -> dict[str, Any] | None:
    raw = connection.get(sweep_key(sweep_id))
    return json.loads(raw) if raw else None
