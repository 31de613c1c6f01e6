"""What a harvest is asked to do: the options of ``POST /harvests``."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ResizeOptions(BaseModel):
    """Long side at most ``max_side`` (aspect kept), re-encoded as JPEG at ``quality``.

    ``max_side`` None keeps the original pixels; the bytes are still re-encoded when they must be
    (not an RGB JPEG, or an EXIF orientation to apply).
    """

    model_config = ConfigDict(extra="forbid")

    max_side: int | None = Field(default=512, ge=16, le=8192)
    quality: int = Field(default=90, ge=30, le=100)


class HarvestOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_per_class: int | None = Field(default=None, ge=1, description="stop at this many stored images per species")
    classes: list[str] | None = Field(default=None, description="harvest only these species (others: skipped)")
    resize: ResizeOptions = Field(default_factory=ResizeOptions)
    min_width: int = Field(default=0, ge=0)
    min_height: int = Field(default=0, ge=0)
    max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, description="larger downloads are refused")
    max_pixels: int = Field(default=50_000_000, ge=1024, description="larger images are refused (bombs)")

    concurrency: int = Field(default=64, ge=1, le=1024, description="requests in flight, all domains")
    per_domain: int = Field(default=8, ge=1, le=256, description="requests in flight to one domain, at most")
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=20.0, gt=0, description="longest wait for the next bytes")
    total_timeout_s: float = Field(default=60.0, gt=0, description="longest time for one request")
    retries: int = Field(default=3, ge=0, le=10, description="retries of a transient error")
    backoff_s: float = Field(default=0.5, ge=0, description="first retry delay; doubles, with jitter")
    max_backoff_s: float = Field(default=30.0, ge=0)
    max_redirects: int = Field(default=5, ge=0, le=20)

    # circuit breaker: park a domain after this many failures in a row, for park_s (doubling)
    breaker_failures: int = Field(default=8, ge=1)
    park_s: float = Field(default=10.0, ge=0)
    max_parks: int = Field(default=3, ge=1, description="after this many parks the domain's rows fail")

    @model_validator(mode="after")
    def _per_domain_within_global(self) -> Self:
        if self.per_domain > self.concurrency:
            self.per_domain = self.concurrency
        if self.classes is not None and not self.classes:
            raise ValueError("classes, when given, must name at least one species")
        return self
