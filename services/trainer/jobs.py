"""Training jobs on the RQ queue ``train``: ``submit_training`` (routes) and ``run_training`` (the worker), and
around them ids, state, logs, cancellation and sweeps.

A job's id is also its model id (``models/<id>/``), so a job can always be found in the registry, even after
Redis has forgotten it. The job writes progress into ``job.meta["progress"]`` and its log lines into a
capped Redis list that the API tails. ``run_training`` is a thin entry point: settings, progress and logs
wired to the RQ job, then services.trainer.task does the work (TensorFlow loads in the work horse only). A job
that raises is marked failed by RQ, and its model card says why.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis
from rq import get_current_job
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from services.trainer.metrics import TrainingRecorder
from shared.job_metrics import JobMetrics
from shared.queue import (
    TERMINAL_STATES,
    JobState,
    QueueName,
    enqueue,
    fetch_job,
    get_queue,
    job_state,
    report_progress,
)
from shared.registry import ModelRegistry, ModelStatus
from shared.settings import get_settings
from shared.storage import ObjectStore
from shared.training import TrainingJobSpec

logger = logging.getLogger(__name__)

KEY_PREFIX = "sporeprint:trainer"
LOG_LINES = 500
KEEP_SECONDS = 30 * 24 * 3600  # finished and failed jobs stay visible for a month


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


def submit_training(connection: Redis, spec: TrainingJobSpec, timeout_s: int, job_id: str | None = None) -> Job:
    """Put a pinned spec on the ``train`` queue; the job id is the future model id."""
    if spec.data.manifest_version is None:
        raise ValueError("pin the manifest version before enqueueing")
    job_id = job_id or new_job_id()
    return enqueue(
        connection, QueueName.train, run_training, job_id, spec.model_dump(mode="json"),
        job_id=job_id, timeout_s=timeout_s, keep_s=KEEP_SECONDS,
        meta={"spec": spec.model_dump(mode="json"), "progress": {"stage": "queued"}},
        description=spec.name or f"train {spec.backbone.name.value} on {spec.data.dataset}",
    )


class RedisLogHandler(logging.Handler):
    """Appends the job's log lines to a capped Redis list, so that ``GET /jobs/{id}`` can show a tail."""

    def __init__(self, connection: Redis, key: str) -> None:
        super().__init__(logging.INFO)
        self.connection = connection
        self.key = key
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(("services", "shared")):
            return
        try:
            line = self.format(record)
            pipe = self.connection.pipeline()
            pipe.rpush(self.key, line)
            pipe.ltrim(self.key, -LOG_LINES, -1)
            pipe.execute()
        except Exception:  # noqa: BLE001 - logging must never break training
            self.handleError(record)


def run_training(model_id: str, spec_data: dict[str, Any]) -> dict[str, Any]:
    """The RQ job: train ``spec_data`` into model ``model_id``."""
    settings = get_settings()
    spec = TrainingJobSpec.model_validate(spec_data)
    job = get_current_job()
    connection: Redis | None = job.connection if job is not None else None
    handler = RedisLogHandler(connection, log_key(model_id)) if connection is not None else None
    root = logging.getLogger()
    if handler is not None:
        root.addHandler(handler)
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)
    store = ObjectStore.from_settings(settings)
    started = time.monotonic()

    def canceled() -> bool:
        return bool(connection is not None and connection.exists(cancel_key(model_id)))

    from services.trainer.task import JobCanceled, TrainingRun  # TensorFlow loads in the work horse only

    recorder = TrainingRecorder(JobMetrics(connection))
    run = TrainingRun(spec, model_id, store, Path(settings.work_dir), progress=report_progress,
                      cancel_requested=canceled, job_id=job.id if job is not None else model_id,
                      on_epoch=recorder.epoch)
    try:
        logger.info("training job %s: %s", model_id, spec.name or spec.backbone.name.value)
        card = run.run()
        recorder.ended(JobState.completed)
    except BaseException as exc:
        logger.exception("training job %s failed", model_id)
        recorder.ended(JobState.cancelled if isinstance(exc, JobCanceled) else JobState.failed)
        message = f"{type(exc).__name__}: {exc}"
        report_progress(stage="failed", error=message)
        try:
            ModelRegistry(store).save_card(run.card(ModelStatus.failed, error=message))
        except Exception:  # noqa: BLE001 - the job failure below is what matters
            logger.exception("could not mark model %s failed", model_id)
        raise
    finally:
        if handler is not None:
            root.removeHandler(handler)
    return {"model_id": card.model_id, "metrics": card.metrics, "seconds": time.monotonic() - started}


def fetch(connection: Redis, job_id: str) -> Job:
    job = fetch_job(connection, job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


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
    state = job_state(job)
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


def recent_sweeps(connection: Redis, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` sweep records; ids whose record has expired leave the index as they are met."""
    found: list[dict[str, Any]] = []
    for raw_id in connection.zrevrange(SWEEP_INDEX, 0, limit - 1):
        sweep_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        record = load_sweep(connection, sweep_id)
        if record is None:
            connection.zrem(SWEEP_INDEX, sweep_id)
        else:
            found.append(record)
    return found
