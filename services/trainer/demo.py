"""Train the demo model: the calls ``make demo`` needs, on top of ``presets.demo_spec``.

    from services.trainer.demo import submit_demo_job, train_demo_model
    job_id = submit_demo_job("synthetic-fungi")          # through the trainer API; a `train` worker runs it
    card = train_demo_model("synthetic-fungi")           # or in this process, blocking (~1 min on a CPU)

Both train the tiny CNN at 64 px (no download), auto-promote the result when it beats the promoted model on
the same test split (or nothing is promoted), and leave it in the registry for the inference service.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx

from services.trainer.presets import demo_spec
from shared.registry import ModelCard
from shared.settings import Settings, get_settings
from shared.storage import ObjectStore

logger = logging.getLogger(__name__)


def submit_demo_job(dataset: str, version: int | None = None, settings: Settings | None = None,
                    classes: list[str] | None = None) -> str:
    """POST the demo spec to the trainer service (settings.trainer_url); returns the job id (= model id)."""
    settings = settings or get_settings()
    response = httpx.post(f"{settings.trainer_url}/jobs", json=demo_spec(dataset, version, classes).model_dump(),
                          headers={"Authorization": f"Bearer {settings.api_token}"}, timeout=60)
    response.raise_for_status()
    job_id: str = response.json()["job_id"]
    logger.info("demo training job %s queued", job_id)
    return job_id


def train_demo_model(dataset: str, version: int | None = None, settings: Settings | None = None,
                     classes: list[str] | None = None, model_id: str | None = None) -> ModelCard:
    """Train the demo model in this process (no queue, no API) and return its card."""
    from services.trainer.jobs import new_job_id
    from services.trainer.task import TrainingRun
    from shared.manifests import ManifestStore

    settings = settings or get_settings()
    store = ObjectStore.from_settings(settings)
    version = version or ManifestStore(store).latest_version(dataset)
    run = TrainingRun(demo_spec(dataset, version, classes), model_id or new_job_id(), store, Path(settings.work_dir))
    return run.run()
