"""Settings shared by every service, read from the environment (prefix ``SPOREPRINT_``)."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "changethis", "secret", "minioadmin", "password"})


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SPOREPRINT_", env_file=".env", env_ignore_empty=True, extra="ignore"
    )

    environment: Environment = Environment.development

    # Object storage (MinIO, AWS S3 or the local SeaweedFS)
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = "sporeprint"
    s3_secret_key: str = "changeme"
    s3_bucket: str = "sporeprint"
    s3_secure: bool = False
    s3_region: str | None = None

    # Queue
    redis_url: str = "redis://127.0.0.1:6379/0"
    # RQ workers: how soon a job whose worker died (kill -9, a lost node) is found and retried. A running job
    # heartbeats every worker_heartbeat_s; after worker_abandoned_after_s more without one it is abandoned, and
    # the next maintenance pass of any live worker (every worker_maintenance_s) retries it, if it has retries
    # left, or fails it. RQ's own defaults take 90 s plus up to 10 minutes.
    worker_heartbeat_s: int = Field(default=10, ge=1)
    worker_abandoned_after_s: int = Field(default=30, ge=1)
    worker_maintenance_s: int = Field(default=30, ge=1)

    # Where each service answers (used by the other services' clients)
    downloader_url: str = "http://127.0.0.1:8001"
    curator_url: str = "http://127.0.0.1:8002"
    trainer_url: str = "http://127.0.0.1:8003"
    inference_url: str = "http://127.0.0.1:8004"

    # Bearer token that mutating endpoints require
    api_token: str = "changeme"

    # Local working space (disk cache of images for training, temp files for imports, the converted
    # relevance model)
    work_dir: str = ".data"

    # The relevance gate (shared/relevance/), the same for the curator and /predict
    relevance_pretrained: str = Field(
        default="efficientnet_lite0",
        description="efficientnet_lite0 (offline, from PyPI), keras_efficientnet_b0 (needs internet) or a .keras path",
    )
    relevance_prior_log_odds: float = Field(
        default=0.0, ge=-20, le=20,
        description="log prior odds that a photo is of a fungus (0: even); raise for sources that are mostly fungi",
    )

    log_level: str = Field(default="INFO")

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        if self.environment is not Environment.development:
            for name in ("s3_secret_key", "api_token"):
                if getattr(self, name).lower() in PLACEHOLDER_SECRETS:
                    raise ValueError(
                        f"SPOREPRINT_{name.upper()} is a placeholder; set a real secret outside development"
                    )
        return self


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; FastAPI routes depend on this so tests can override it."""
    return Settings()
