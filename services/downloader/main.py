"""The downloader service: import sources into manifests, run harvests on the ``harvest`` queue."""

from __future__ import annotations

from fastapi import FastAPI

from services.downloader.api.routes import harvests, manifests
from shared.api import client_lifespan, health_router, operation_id


def create_app() -> FastAPI:
    app = FastAPI(title="sporeprint downloader", version="0.1.0", lifespan=client_lifespan,
                  generate_unique_id_function=operation_id)
    app.include_router(health_router)
    app.include_router(manifests.router)
    app.include_router(harvests.router)
    return app


app = create_app()
