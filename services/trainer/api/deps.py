"""Dependencies of the trainer routes, as ``Annotated`` aliases.

Clients (S3, Redis) are made once per distinct settings and kept on the app (see ``shared.api``), so
tests that override ``get_settings`` get clients for their own bucket.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.trainer.core.config import TrainerSettings, get_trainer_settings
from shared.api import ManifestsDep, RedisDep, SettingsDep, StoreDep
from shared.registry import ModelRegistry

TrainerSettingsDep = Annotated[TrainerSettings, Depends(get_trainer_settings)]


def get_registry(store: StoreDep) -> ModelRegistry:
    return ModelRegistry(store)


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]

# the shared dependencies are re-exported: routes import every dependency from here
__all__ = [
    "ManifestsDep", "RedisDep", "RegistryDep", "SettingsDep", "StoreDep", "TrainerSettingsDep", "get_registry",
]
