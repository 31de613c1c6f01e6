"""The curator service: domain scores, the blacklist, review samples, labels, the irrelevant-image
filter, duplicates and curated manifest versions. ``uvicorn services.curator.main:app --port 8002``."""

from __future__ import annotations

from fastapi import FastAPI

from services.curator.api.routes import blacklist, curations, domains, filter, labels
from services.curator.metrics import CuratorMetrics
from shared.api import service_app


def create_app() -> FastAPI:
    return service_app("curator", (blacklist.router, domains.router, labels.router, curations.router, filter.router),
                       summary="Score source domains, keep the blacklist, review samples, filter irrelevant images.",
                       metrics=CuratorMetrics(),
                       responses={400: "a refused value (the detail says which)", 401: "missing API token",
                                  403: "invalid API token", 404: "not found", 409: "conflicts with the current state"})


app = create_app()
