"""The skeleton every service is built on: ``service_app`` (lifespan, operation ids, ``/health``, ``/metrics``,
request metrics, request ids and the access log), the declared error responses, and the dependencies on S3 and
Redis clients.

S3 and Redis clients are made once per distinct settings and kept on the app (``client_lifespan`` owns the
caches), so tests that override ``get_settings`` get clients for their own bucket and Redis.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from redis import Redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.json_guard import StrictJsonBodies
from shared.logs import REQUEST_ID_HEADER, bind_request_id, configure_logging, reset_request_id
from shared.manifests import ManifestStore
from shared.metrics import HttpMetrics, RequestMetrics
from shared.queue import redis_connection
from shared.settings import Settings, get_settings
from shared.storage import ObjectStore

SettingsDep = Annotated[Settings, Depends(get_settings)]


ServiceLifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def client_lifespan(app: FastAPI) -> AsyncIterator[None]:
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
    stores: dict[tuple[str | None, ...], ObjectStore] = request.app.state.stores
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


_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
access_logger = logging.getLogger("sporeprint.access")


def request_id_from(value: str | None) -> str:
    """The caller's request id if it is a sane token (it goes into every log line), else a new one."""
    if value is not None and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestLog:
    """ASGI middleware, outermost: gives each request an id (the caller's ``X-Request-ID`` when sane), which
    every log line of the request carries and the response returns, and writes one access line per request
    (``sporeprint.access``, INFO; uvicorn's own access log is off: ``--no-access-log``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value for key, value in scope["headers"] if key == b"x-request-id"), None)
        request_id = request_id_from(given.decode("latin-1") if given is not None else None)
        header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped every handler

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(key, value) for key, value in message.get("headers", []) if key.lower() != header[0]]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        token = bind_request_id(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            self._log(scope, status, started)
            # The id stays set: the server logs the traceback next, in this request's own task.
            raise
        self._log(scope, status, started)
        reset_request_id(token)

    @staticmethod
    def _log(scope: Scope, status: int, started: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "other"  # the template, as in the metrics
        client = scope.get("client")
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        access_logger.info("%s %s %d %.1f ms", scope["method"], route, status, duration_ms, extra={
            "method": scope["method"], "route": route, "path": scope["path"][:2048], "status": status,
            "duration_ms": duration_ms, "client": f"{client[0]}:{client[1]}" if client else None})


def service_app(name: str, routers: Sequence[APIRouter], *, summary: str | None = None,
                lifespan: ServiceLifespan | None = None, metrics: HttpMetrics | None = None,
                responses: Mapping[int, str] | None = None) -> FastAPI:
    """A service's app: the shared clients' lifespan (then the service's own, if any), "tag-name" operation
    ids, ``/health`` and ``/metrics``, request metrics, strict JSON bodies (``shared.json_guard``), and
    ``routers`` with the error answers they share. Logging is configured here, from the settings, once per
    process (``shared.logs``), and every request gets an id and an access line (:class:`RequestLog`)."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format, service=name)

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
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)  # it counts the guard's refusals too
    app.add_middleware(RequestLog)  # outermost: every answer, refusals and 404s included, has an id and a line
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
