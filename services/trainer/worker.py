"""The RQ job function of the ``train`` queue, and the training worker process.

``python -m services.trainer.worker train`` is ``python -m shared.worker train`` with TensorFlow imported
once in the parent: RQ forks a work horse per job, and each fork then starts training at once instead of
importing TensorFlow again (10-20 s on a busy CPU). ``shared.worker`` runs the same jobs, only slower to start.

The job function is a thin entry point: settings, progress and logs wired to the RQ job, then
services.trainer.task does the work. A job that raises is marked failed by RQ, and its model card says why.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from redis import Redis
from rq import get_current_job

from services.trainer.jobs import LOG_LINES, cancel_key, log_key
from shared.queue import report_progress
from shared.registry import ModelRegistry, ModelStatus
from shared.settings import get_settings
from shared.storage import ObjectStore
from shared.training import TrainingJobSpec

logger = logging.getLogger(__name__)


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


def run_training_job(model_id: str, spec_data: dict[str, Any]) -> dict[str, Any]:
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

    from services.trainer.task import TrainingRun  # TensorFlow loads in the work horse only

    run = TrainingRun(spec, model_id, store, Path(settings.work_dir), progress=report_progress,
                      cancel_requested=canceled, job_id=job.id if job is not None else model_id)
    try:
        logger.info("training job %s: %s", model_id, spec.name or spec.backbone.name.value)
        card = run.run()
    except BaseException as exc:
        logger.exception("training job %s failed", model_id)
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


def main(argv: list[str] | None = None) -> None:
    # Import only: no TensorFlow op runs (and so no thread pool starts) before RQ forks a work horse.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure  # noqa: F401  - what the plots use

    import services.trainer.task  # noqa: F401  - TensorFlow, Keras and the applications
    from shared.worker import main as worker_main

    worker_main(argv)


if __name__ == "__main__":
    main()
