"""Trainer knobs (env prefix ``SPOREPRINT_TRAINER_``), served by a cached dependency tests can override."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import SporeprintSettings


class TrainerSettings(SporeprintSettings):
    model_config = SettingsConfigDict(env_prefix="SPOREPRINT_TRAINER_", env_ignore_empty=True, extra="ignore")

    job_timeout_seconds: int = Field(default=7 * 24 * 3600, ge=60, description="RQ kills a job running longer")
    log_tail_lines: int = Field(default=50, ge=1, le=500)


@lru_cache
def get_trainer_settings() -> TrainerSettings:
    return TrainerSettings()
