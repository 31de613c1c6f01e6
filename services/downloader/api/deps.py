"""Dependencies of the downloader routes, as ``Annotated`` aliases.

Clients (S3, Redis) are made once per distinct settings and kept on the app (see ``main.lifespan``), so
tests that override ``get_settings`` get clients for their own bucket.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis import Redis

from services.downloader.core.config import DownloaderSettings, get_downloader_settings
from shared.manifests import ManifestStore
from shared.queue import redis_connection
from shared.settings import Settings, get_settings
from shared.storage import ObjectStore

SettingsDep = Annotated[Settings, Depends(get_settings)]
DownloaderSettingsDep = Annotated[DownloaderSettings, Depends(get_downloader_settings)]


def get_store(request: Request, settings: SettingsDep) -> ObjectStore:
    stores: dict[tuple[str, ...], ObjectStore] = request.app.state.stores
    key = (settings.s3_endpoint, settings.s3_access_key, settings.s3_bucket)
    store = stores.get(key)
    if store is None:
        store = stores[key] = ObjectStore.from_settings(settings)
        store.ensure_bucket()
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
