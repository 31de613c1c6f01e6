"""The trainer service: training jobs and sweeps on the ``train`` queue, and the model registry."""

from __future__ import annotations

from fastapi import FastAPI

from services.trainer.api.routes import jobs, models, presets, sweeps
from shared.api import client_lifespan, health_router, operation_id


def create_app() -> FastAPI:
    app = FastAPI(title="sporeprint trainer", version="0.1.0", lifespan=client_lifespan,
                  generate_unique_id_function=operation_id)
    app.include_router(health_router)
    for module in (jobs, sweeps, models, presets):
        app.include_router(module.router)
    return app


app = create_app()
