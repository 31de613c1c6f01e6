"""The curator's long job on the RQ queue ``curate``: ``submit_curation`` (routes) and ``run_curation`` (the
worker). The run record (``curation/runs/<id>.json``) is saved before the job is queued: the job reads its
request from there, and the record outlives the job in Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq.job import Job

from services.curator.curation import CurationRun, curate, load_run, save_run
from services.curator.metrics import CurationRecorder
from shared.job_metrics import JobMetrics
from shared.queue import JobState, QueueName, enqueue
from shared.settings import get_settings
from shared.storage import ObjectStore

KEEP_SECONDS = 7 * 24 * 3600  # a curation job's result or failure stays readable for a week


def submit_curation(connection: Redis, store: ObjectStore, run: CurationRun, timeout_s: int) -> Job:
    save_run(store, run)
    return enqueue(connection, QueueName.curate, run_curation, run.id, job_id=run.id, timeout_s=timeout_s,
                   keep_s=KEEP_SECONDS, description=f"curate {run.dataset} v{run.version}")


def run_curation(curation_id: str) -> dict[str, Any]:
    """The RQ job: curate the version named in ``curation/runs/<id>.json`` and write a new version."""
    settings = get_settings()
    store = ObjectStore.from_settings(settings)
    run = load_run(store, curation_id)
    if run is None:
        raise LookupError(f"curation {curation_id} has no run record")
    run.state = JobState.running
    save_run(store, run)
    recorder = CurationRecorder(JobMetrics.for_current_job())
    try:
        report, version = curate(store, run)
    except Exception as exc:
        run.state, run.error, run.finished_at = JobState.failed, f"{type(exc).__name__}: {exc}", datetime.now(UTC)
        save_run(store, run)
        recorder.ended(JobState.failed)
        raise
    recorder.ended(JobState.completed, report)
    run.state, run.report, run.output_version, run.finished_at = (JobState.completed, report, version,
                                                                  datetime.now(UTC))
    save_run(store, run)
    return run.model_dump(mode="json")
