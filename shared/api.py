"""The skeleton every service is built on: ``service_app`` (lifespan, operation ids, ``/health``, ``/metrics``,
request metrics), the declared error responses, and the dependencies on S3 and Redis clients.

S3 and Redis clients are made once per distinct settings and kept on the app (``client_lifespan`` owns the
caches), so tests that override ``get_settings`` get clients for their own bucket and Redis.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from redis import Redis

from shared.json_guard import StrictJsonBodies
from shared.logs import configure_logging
from shared.manifests import ManifestStore
from shared.metrics import HttpMetrics, RequestMetrics
from shared.queue import redis_connection
from shared.settings import Settings, get_settings
from shared.storage import ObjectStore

SettingsDep = Annotated[Settings, Depends(get_settings)]


ServiceLifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def client_lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Tests override get_settings; the lifespan honours the same override.
    configure_logging(app.dependency_overrides.get(get_settings, get_settings)().log_level)
    app.state.stores = {}
    app.state.redis = {}
    try:
        yield
    finally:
        for connection in app.state.redis.values():
            connection.close()


_STORES_LOCK = threading.Lock()


def get_store(request: Request, settings: SettingsDep) -> ObjectStore:
    """The app's store for these settings, its bucket created before any request may use it (concurrent first
    requests wait for the one that creates it, instead of racing ahead to a bucket that is not there yet)."""
    stores: dict[tuple[str, ...], ObjectStore] = request.app.state.stores
    key = (settings.s3_endpoint, settings.s3_access_key, settings.s3_bucket)
    store = stores.get(key)
    if store is None:
        with _STORES_LOCK:
            store = stores.get(key)
            if store is None:
                store = ObjectStore.from_settings(settings)
                store.ensure_bucket()
                stores[key] = store
    return store


def get_redis(request: Request, settings: SettingsDep) -> Redis:
    connections: dict[str, Redis] = request.app.state.redis
    connection = connections.get(settings.redis_url)
    if connection is None:
        connection = connections[settings.redis_url] = redis_connection(settings)
    return connection


StoreDep = Annotated[ObjectStore, Depends(get_store)]
RedisDep = Annotated[Redis, Depends(get_redis)]


def get_manifests(store: StoreDep) -> ManifestStore:
    return ManifestStore(store)


ManifestsDep = Annotated[ManifestStore, Depends(get_manifests)]


def operation_id(route: APIRoute) -> str:
    """Operation ids "tag-name", so generated clients read well."""
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


class ErrorMessage(BaseModel):
    """An error: a fixed message (tests assert it) or, for a malformed request, FastAPI's list of field errors."""

    detail: str | list[dict[str, Any]]


def error_responses(described: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """The error answers a router or route declares (status -> when), so generated clients know them."""
    return {code: {"model": ErrorMessage, "description": description} for code, description in described.items()}


class Health(BaseModel):
    status: str = "ok"


health_router = APIRouter(tags=["health"])


@health_router.get("/health", response_model=Health)
def health() -> Health:
    """The process answers; what it depends on is checked where it is used."""
    return Health()


def get_metrics(request: Request) -> HttpMetrics:
    metrics: HttpMetrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[HttpMetrics, Depends(get_metrics)]


@health_router.get("/metrics", response_model=None, response_class=Response)
def metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics of this process."""
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def service_app(name: str, routers: Sequence[APIRouter], *, summary: str | None = None,
                lifespan: ServiceLifespan | None = None, metrics: HttpMetrics | None = None,
                responses: Mapping[int, str] | None = None) -> FastAPI:
    """A service's app: the shared clients' lifespan (then the service's own, if any), "tag-name" operation
    ids, ``/health`` and ``/metrics``, request metrics, strict JSON bodies (``shared.json_guard``), and
    ``routers`` with the error answers they share."""

    @asynccontextmanager
    async def both(app: FastAPI) -> AsyncIterator[None]:
        async with client_lifespan(app):
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield

    app = FastAPI(title=f"sporeprint {name}", summary=summary, version=_version(), lifespan=both,
                  generate_unique_id_function=operation_id)
    app.state.metrics = metrics or HttpMetrics(name)
    app.add_middleware(StrictJsonBodies)
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)  # outermost: it counts the guard's refusals too
    app.include_router(health_router)
    shared_errors = error_responses(responses or {})
    for router in routers:
        app.include_router(router, responses=shared_errors)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sporeprint")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"
