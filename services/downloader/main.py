"""The downloader service: import sources into manifests, run harvests on the ``harvest`` queue.
``uvicorn services.downloader.main:app --port 8001``."""

from __future__ import annotations

from fastapi import FastAPI

from services.downloader.api.routes import harvests, manifests
from services.downloader.metrics import DownloaderMetrics
from shared.api import service_app


def create_app() -> FastAPI:
    return service_app("downloader", (manifests.router, harvests.router),
                       summary="Import image sources into versioned manifests; harvest their images into S3.",
                       metrics=DownloaderMetrics(),
                       responses={401: "missing API token", 403: "invalid API token"})


app = create_app()
