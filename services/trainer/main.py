"""The trainer service: training jobs and sweeps on the ``train`` queue, and the model registry.
``uvicorn services.trainer.main:app --port 8003``."""

from __future__ import annotations

from fastapi import FastAPI

from services.trainer.api.routes import jobs, models, presets, sweeps
from services.trainer.metrics import TrainerMetrics
from shared.api import service_app


def create_app() -> FastAPI:
    return service_app("trainer", (jobs.router, sweeps.router, models.router, presets.router),
                       summary="Training jobs and sweeps on the GPU queue, and the model registry with lineage.",
                       metrics=TrainerMetrics(),
                       responses={401: "missing API token", 403: "invalid API token", 404: "not found",
                                  409: "the job or model cannot do that now",
                                  422: "an invalid spec, or a manifest version that cannot satisfy it"})


app = create_app()
