"""Dependencies of the downloader routes, as ``Annotated`` aliases.

Clients (S3, Redis) are made once per distinct settings and kept on the app (see ``shared.api``), so
tests that override ``get_settings`` get clients for their own bucket.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.downloader.core.config import DownloaderSettings, get_downloader_settings
from shared.api import ManifestsDep, RedisDep, SettingsDep, StoreDep

DownloaderSettingsDep = Annotated[DownloaderSettings, Depends(get_downloader_settings)]

# the shared dependencies are re-exported: routes import every dependency from here
__all__ = [
    "DownloaderSettingsDep", "ManifestsDep", "RedisDep", "SettingsDep", "StoreDep",
]
