"""The trainer service: training jobs and sweeps on the ``train`` queue, and the model registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.trainer.api.routes import health, jobs, models, presets, sweeps
from shared.logs import configure_logging
from shared.settings import get_settings


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    configure_logging(get_settings().log_level)
    app.state.stores = {}
    app.state.redis = {}
    try:
        yield
    finally:
        for connection in app.state.redis.values():
            connection.close()


def create_app() -> FastAPI:
    app = FastAPI(title="sporeprint trainer", version="0.1.0", lifespan=lifespan,
                  generate_unique_id_function=_operation_id)
    for module in (health, jobs, sweeps, models, presets):
        app.include_router(module.router)
    return app


app = create_app()
