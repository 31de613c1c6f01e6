"""The curator service: domain scores, the blacklist, review samples, labels, the irrelevant-image
filter, duplicates and curated manifest versions. ``uvicorn services.curator.main:app --port 8002``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.curator.api.deps import ERROR_RESPONSES
from services.curator.api.routes import blacklist, curations, domains, filter, health, labels
from shared.logs import configure_logging
from shared.settings import get_settings

logger = logging.getLogger(__name__)


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    configure_logging(get_settings().log_level)
    app.state.stores = {}  # ObjectStore per storage target, filled by deps.get_store
    app.state.redis = {}
    yield
    for connection in app.state.redis.values():
        connection.close()


def create_app() -> FastAPI:
    app = FastAPI(title="sporeprint curator", lifespan=lifespan, generate_unique_id_function=_operation_id)
    app.include_router(health.router)
    for module in (blacklist, domains, labels, curations, filter):
        app.include_router(module.router, responses=ERROR_RESPONSES)
    return app


app = create_app()
