"""Typed configuration of the fixture web: its domains and how each behaves."""

from __future__ import annotations

import math
import random
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fixtureweb.encoding import ImageFormat
from fixtureweb.faults import DEFAULT_FAULT_RATES, Fault

PHOTO_HOSTS = (
    "fungi-atlas.test", "open-nature-photos.test", "mushroom-observer.test", "svampe-atlas.test",
    "artsobs-media.test", "pilz-forum.test", "observation-media.test", "myco-photos.test",
    "funga-nordica.test", "champignons-photo.test", "setas-iberia.test", "wild-fungi.test",
    "naturgucker-media.test", "mycoquebec-photos.test", "biodiv-images.test", "forest-floor.test",
    "cantharellus-club.test", "spore-hunters.test", "citizen-myco.test", "fungi-of-europe.test",
)
HERBARIUM_HOSTS = (
    "herbarium-digital.test", "fungarium-assets.test", "museum-media.test", "specimen-scans.test",
    "natural-history-collections.test",
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Latency(_Frozen):
    """Time to first byte: lognormal with this median; `sigma` 0 makes it exact."""

    median_ms: float = Field(default=15.0, ge=0)
    sigma: float = Field(default=0.5, ge=0)
    max_ms: float = Field(default=3000.0, ge=0)

    def sample_s(self, rng: random.Random) -> float:
        if self.median_ms <= 0:
            return 0.0
        ms = self.median_ms * math.exp(self.sigma * rng.gauss(0.0, 1.0)) if self.sigma else self.median_ms
        return min(ms, self.max_ms) / 1000.0


class DomainConfig(_Frozen):
    """One virtual image host."""

    name: str
    publisher: str = ""
    specimen_host: bool = False  # a herbarium/fungarium: mostly irrelevant images, PRESERVED_SPECIMEN records
    irrelevant_share: float = Field(default=0.02, ge=0, le=1)
    weight: float = Field(default=1.0, gt=0)  # share of an export's photos hosted here
    latency: Latency = Latency()
    fault_rates: dict[Fault, float] = Field(default_factory=dict)
    formats: dict[ImageFormat, float] = Field(default_factory=lambda: {ImageFormat.JPEG: 1.0})
    image_size: int = Field(default=320, ge=8, le=4096)  # longest side in pixels
    jpeg_quality: tuple[int, int] = (70, 92)
    retry_after_s: int = Field(default=1, ge=0)
    transient_failures: int = Field(default=1, ge=0)  # 429/503 before a transient fault lets a path through
    trickle_bytes_per_s: int = Field(default=32_000, gt=0)
    hang_s: float = Field(default=60.0, ge=0)
    oversized_bytes: int = Field(default=25_000_000, gt=0)
    max_concurrent: int | None = Field(default=None, ge=1)  # beyond it: 429
    noai: bool = False  # X-Robots-Tag: noai on every response

    @field_validator("name")
    @classmethod
    def _lower_host(cls, value: str) -> str:
        if not value or "/" in value or ":" in value:
            raise ValueError(f"a domain is a bare host name, got {value!r}")
        return value.lower()

    @field_validator("fault_rates")
    @classmethod
    def _rates_sum(cls, value: dict[Fault, float]) -> dict[Fault, float]:
        if any(r < 0 for r in value.values()) or sum(value.values()) > 1:
            raise ValueError("fault rates must be non-negative and sum to at most 1")
        return value


class WebConfig(_Frozen):
    """The whole fixture web: the species catalog it draws from and its domains."""

    seed: int = 0
    n_classes: int = Field(default=10, ge=1, le=100)
    domains: tuple[DomainConfig, ...]
    cache_bytes: int = Field(default=256 * 1024 * 1024, ge=0)

    @model_validator(mode="after")
    def _unique_domains(self) -> WebConfig:
        names = [d.name for d in self.domains]
        if len(set(names)) != len(names):
            raise ValueError("domain names must be unique")
        if not names:
            raise ValueError("at least one domain")
        return self

    def domain(self, name: str) -> DomainConfig:
        for d in self.domains:
            if d.name == name.lower():
                return d
        raise KeyError(name)

    @property
    def domain_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.domains)

    @classmethod
    def load(cls, path: str | Path) -> WebConfig:
        return cls.model_validate_json(Path(path).read_text())

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2))


def preset(n_domains: int = 20, n_herbarium: int = 3, *, n_classes: int = 10, seed: int = 0,
           faults: bool = True, latency_ms: float = 15.0, image_size: int = 320) -> WebConfig:
    """A realistic web: `n_domains` hosts of which `n_herbarium` serve ~80% irrelevant images; a long tail
    of host sizes; a few hosts serving PNG/WebP, one slow, one marked noai."""
    if not 0 <= n_herbarium <= n_domains:
        raise ValueError("n_herbarium must be between 0 and n_domains")
    rng = random.Random(f"preset:{seed}")
    domains: list[DomainConfig] = []
    n_photo = n_domains - n_herbarium
    for i in range(n_photo):
        name = PHOTO_HOSTS[i] if i < len(PHOTO_HOSTS) else f"photos-{i}.test"
        formats = {ImageFormat.JPEG: 1.0}
        if i % 5 == 3:
            formats = {ImageFormat.JPEG: 0.8, ImageFormat.PNG: 0.1, ImageFormat.WEBP: 0.1}
        domains.append(DomainConfig(
            name=name,
            publisher=_publisher(name),
            irrelevant_share=0.02,
            weight=1.0 / (i + 1) ** 0.8,
            latency=Latency(median_ms=latency_ms * (4.0 if i == 2 else rng.uniform(0.5, 2.0)), sigma=0.5),
            fault_rates=dict(DEFAULT_FAULT_RATES) if faults else {},
            formats=formats,
            image_size=image_size,
            noai=i == n_photo - 1 and n_photo > 3,
        ))
    for i in range(n_herbarium):
        name = HERBARIUM_HOSTS[i] if i < len(HERBARIUM_HOSTS) else f"herbarium-{i}.test"
        domains.append(DomainConfig(
            name=name,
            publisher=_publisher(name),
            specimen_host=True,
            irrelevant_share=0.8,
            weight=0.15,
            latency=Latency(median_ms=latency_ms * 3, sigma=0.7),
            fault_rates=dict(DEFAULT_FAULT_RATES) if faults else {},
            image_size=image_size,
        ))
    return WebConfig(seed=seed, n_classes=n_classes, domains=tuple(domains))


def _publisher(host: str) -> str:
    return " ".join(part.capitalize() for part in host.removesuffix(".test").split("-"))
