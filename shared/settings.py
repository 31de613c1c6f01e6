"""Settings shared by every service, read from the environment (prefix ``SPOREPRINT_``).

No ``.env`` file is read unless one is named: ``SPOREPRINT_ENV_FILE=path`` (see :func:`env_file`). A compose
``.env`` in the working directory therefore never leaks into a ``sporeprint`` command run on the host.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, DotEnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "changethis", "secret", "minioadmin", "password"})


ENV_FILE_VARIABLE = "SPOREPRINT_ENV_FILE"


class EnvFileMissing(RuntimeError):
    """SPOREPRINT_ENV_FILE names a file that is not there."""


def env_file() -> Path | None:
    """The settings file named by ``SPOREPRINT_ENV_FILE`` (``KEY=value`` lines), or ``None``: environment only.

    Every settings class of every service reads it (:class:`SporeprintSettings`), so one variable decides for
    all of them; a named file that does not exist is an error, not silently nothing.
    """
    name = os.environ.get(ENV_FILE_VARIABLE, "").strip()
    if not name:
        return None
    path = Path(name).expanduser()
    if not path.is_file():
        raise EnvFileMissing(f"{ENV_FILE_VARIABLE}={name}: no such file")
    return path


class SporeprintSettings(BaseSettings):
    """The base of every settings class: init arguments, then the environment, then the file named by
    ``SPOREPRINT_ENV_FILE`` (if any), then secret files."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, DotEnvSettingsSource(settings_cls, env_file=env_file()),
                file_secret_settings)


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(SporeprintSettings):
    model_config = SettingsConfigDict(
        env_prefix="SPOREPRINT_", env_ignore_empty=True, extra="ignore"
    )

    environment: Environment = Environment.development

    # Object storage (MinIO, AWS S3 or the local SeaweedFS). With no access key set, credentials come from the
    # AWS chain instead (shared/storage.py): AWS_* variables, a web identity (EKS IRSA / Pod Identity), the
    # container or instance role (IMDSv2).
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_bucket: str = "sporeprint"
    s3_secure: bool = False
    s3_region: str | None = None

    # Queue. ``rediss://`` for TLS. The user and password may be in the URL or, better (kept out of the URL
    # that processes log and show), in redis_username / redis_password; those win over the URL's.
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_username: str | None = None
    redis_password: SecretStr | None = None
    redis_ca_file: str | None = Field(default=None, description="CA bundle for rediss:// (default: the system's)")
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
    log_format: Literal["auto", "json", "text"] = "auto"

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        if self.environment is not Environment.development:
            secrets = {"api_token": self.api_token, "s3_secret_key": self.s3_secret_key,
                       "redis_password": self.redis_password.get_secret_value() if self.redis_password else None}
            for name, value in secrets.items():
                if value is not None and value.lower() in PLACEHOLDER_SECRETS:
                    raise ValueError(
                        f"SPOREPRINT_{name.upper()} is a placeholder; set a real secret outside development"
                    )
        if (self.s3_access_key is None) != (self.s3_secret_key is None):
            raise ValueError("set both SPOREPRINT_S3_ACCESS_KEY and SPOREPRINT_S3_SECRET_KEY, or neither "
                             "(then the AWS credential chain: instance or pod role)")
        if self.environment is Environment.production and not self.redis_has_password:
            raise ValueError("Redis needs a password in production: set SPOREPRINT_REDIS_PASSWORD (and "
                             "SPOREPRINT_REDIS_USERNAME for an ACL user); whoever reaches an open Redis can "
                             "change every job")
        return self

    @property
    def redis_has_password(self) -> bool:
        return self.redis_password is not None or bool(urlsplit(self.redis_url).password)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; FastAPI routes depend on this so tests can override it."""
    return Settings()
