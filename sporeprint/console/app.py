"""The web console: a static page (index.html, its scripts and styles under /static) plus a same-origin proxy to
each service's API.

The page calls ``/api/<service>/<path>``; the console forwards the request (method, query,
body, ``Authorization``) to that service's URL from the settings. It adds no credentials of
its own: a person pastes the API token into the page, which sends it with every mutation.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from shared.settings import Settings, get_settings

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
SERVICES = ("downloader", "curator", "trainer", "inference")
FORWARDED_HEADERS = ("authorization", "content-type", "accept")
UNKNOWN_SERVICE = "unknown service: use one of downloader, curator, trainer, inference"
SERVICE_DOWN = "the service did not answer"


class Health(BaseModel):
    status: str
    services: dict[str, str]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5)) as client:
        app.state.client = client
        yield


def create_app() -> FastAPI:
    app = FastAPI(title="sporeprint console", lifespan=lifespan)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")  # the page's scripts, styles and icon

    @app.get("/health", response_model=Health, tags=["health"])
    async def health(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> Health:
        """The console is up; each service's own /health as seen from here."""
        client: httpx.AsyncClient = request.app.state.client
        seen = {}
        for service in SERVICES:
            try:
                answer = await client.get(f"{_service_url(settings, service)}/health", timeout=2)
                seen[service] = "ok" if answer.status_code == 200 else f"HTTP {answer.status_code}"
            except httpx.HTTPError:
                seen[service] = "down"
        return Health(status="ok", services=seen)

    @app.api_route("/api/{service}/{path:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False)
    async def proxy(
        service: str, path: str, request: Request, settings: Annotated[Settings, Depends(get_settings)]
    ) -> Response:
        if service not in SERVICES:
            raise HTTPException(404, UNKNOWN_SERVICE)
        client: httpx.AsyncClient = request.app.state.client
        headers = {name: value for name, value in request.headers.items() if name.lower() in FORWARDED_HEADERS}
        try:
            upstream = await client.request(
                request.method, f"{_service_url(settings, service)}/{path}",
                params=request.query_params, content=await request.body(), headers=headers,
            )
        except httpx.HTTPError as exc:
            logger.warning("console proxy to %s failed: %s", service, exc)
            raise HTTPException(502, f"{SERVICE_DOWN}: {service}") from None
        return Response(upstream.content, upstream.status_code,
                        media_type=upstream.headers.get("content-type"))

    return app


def _service_url(settings: Settings, service: str) -> str:
    return str(getattr(settings, f"{service}_url")).rstrip("/")


app = create_app()
