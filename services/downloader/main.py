"""The downloader service: import sources into manifests, run harvests on the ``harvest`` queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.downloader.api.routes import harvests, health, manifests
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
    app = FastAPI(title="sporeprint downloader", version="0.1.0", lifespan=lifespan,
                  generate_unique_id_function=_operation_id)
    app.include_router(health.router)
    app.include_router(manifests.router)
    app.include_router(harvests.router)
    return app


app = create_app()
