"""FastAPI pieces every service shares: clients kept on the app, their dependencies, operation ids.

S3 and Redis clients are made once per distinct settings and kept on the app (``client_lifespan`` owns the
caches), so tests that override ``get_settings`` get clients for their own bucket and Redis.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel
from redis import Redis

from shared.logs import configure_logging
from shared.manifests import ManifestStore
from shared.queue import redis_connection
from shared.settings import Settings, get_settings
from shared.storage import ObjectStore

SettingsDep = Annotated[Settings, Depends(get_settings)]


@asynccontextmanager
async def client_lifespan(app: FastAPI) -> AsyncIterator[None]:
    configure_logging(get_settings().log_level)
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


class Health(BaseModel):
    status: str = "ok"


health_router = APIRouter(tags=["health"])


@health_router.get("/health", response_model=Health)
def health() -> Health:
    """The process answers; what it depends on is checked where it is used."""
    return Health()
