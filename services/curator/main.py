"""The curator service: domain scores, the blacklist, review samples, labels, the irrelevant-image
filter, duplicates and curated manifest versions. ``uvicorn services.curator.main:app --port 8002``."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from services.curator.api.deps import ERROR_RESPONSES
from services.curator.api.routes import blacklist, curations, domains, filter, labels
from shared.api import client_lifespan, health_router, operation_id

logger = logging.getLogger(__name__)


def create_app() -> FastAPI:
    app = FastAPI(title="sporeprint curator", lifespan=client_lifespan, generate_unique_id_function=operation_id)
    app.include_router(health_router)
    for module in (blacklist, domains, labels, curations, filter):
        app.include_router(module.router, responses=ERROR_RESPONSES)
    return app


app = create_app()
