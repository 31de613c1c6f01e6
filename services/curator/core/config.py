"""Curator knobs (env prefix ``SPOREPRINT_CURATOR_``), served by a cached dependency tests can override."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import SporeprintSettings


class CuratorSettings(SporeprintSettings):
    model_config = SettingsConfigDict(env_prefix="SPOREPRINT_CURATOR_", env_ignore_empty=True, extra="ignore")

    # Default recommendation rules for GET /domains (overridable per request).
    min_scored: int = Field(default=20, ge=1, description="images a domain needs before it can be blacklisted")
    blacklist_lower: float = Field(default=0.5, ge=0, le=1, description="Wilson lower bound of irrelevant share")
    review_upper: float = Field(default=0.2, ge=0, le=1, description="Wilson upper bound above which to review")
    wilson_z: float = Field(default=1.96, gt=0)
    # Curation defaults.
    irrelevant_threshold: float = Field(default=0.5, ge=0, le=1)
    min_side: int = Field(default=64, ge=1)
    duplicate_distance: int = Field(default=4, ge=0, le=32, description="max Hamming distance of 64-bit pHashes")
    fetch_concurrency: int = Field(default=8, ge=1, le=64)
    sample_max: int = Field(default=200, ge=1)
    curation_timeout_s: int = Field(default=6 * 3600, ge=60, description="RQ stops a curation running longer")


@lru_cache
def get_curator_settings() -> CuratorSettings:
    return CuratorSettings()
