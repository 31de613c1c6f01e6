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
    cache_max_bytes: int = Field(
        default=100 * 2**30, ge=2**20,
        description="bound of the worker's local cache of images and shards (under SPOREPRINT_WORK_DIR); the least "
                    "recently used files go first. With input 'shards' keep it above ~8 shards (in flight + read)",
    )
    shard_bytes: int = Field(default=150 * 2**20, ge=2**10, le=2**32,
                             description="target size of one TFRecord shard written for input 'shards'")
    shard_wait_s: float = Field(default=3600, gt=0, le=86_400,
                                description="how long a multi-worker job's other workers wait for the chief to "
                                            "finish packing the shards (only the chief packs)")
    shard_fetch_threads: int = Field(default=4, ge=1, le=32,
                                     description="shards downloaded at once while streaming (and images while packing"
                                                 ", x2)")


@lru_cache
def get_trainer_settings() -> TrainerSettings:
    return TrainerSettings()
