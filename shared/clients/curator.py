"""The curator's API: the blacklist, per-domain scores, and curations (a manifest version in, a curated one out)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from shared.clients.base import ServiceClient, segment
from shared.curation import Blacklist, BlacklistEntry
from shared.queue import JobState


class DomainScore(BaseModel):
    domain: str
    images: int
    irrelevant_share: float | None = None
    blacklisted: str | None = Field(default=None, description="the entry that covers the whole domain, if any")
    recommendation: str = Field(description="keep, review or blacklist")
    why: str = ""


class DomainReport(BaseModel):
    dataset: str
    version: int
    rows: int
    domains: list[DomainScore]


class CurationReport(BaseModel):
    rows: int
    included: int
    excluded: dict[str, int] = Field(description="rows per exclusion reason")
    blacklist_revision: int


class Curation(BaseModel):
    id: str
    dataset: str
    version: int
    state: JobState
    progress: dict[str, Any] = Field(default_factory=dict)
    output_version: int | None = None
    report: CurationReport | None = None
    error: str | None = None


class BlacklistChange(BaseModel):
    revision: int
    action: str
    entry: str
    reason: str
    actor: str
    at: datetime


class SampleImage(BaseModel):
    image_id: str
    url: str
    image_url: str
    irrelevant_score: float | None = None
    label: str | None = None


class DomainSample(BaseModel):
    dataset: str
    version: int
    domain: str
    seed: int
    available: int
    images: list[SampleImage]


class StoredLabel(BaseModel):
    image_id: str
    label: str
    dataset: str
    domain: str
    actor: str
    at: datetime


class LabelResult(BaseModel):
    stored: int
    total_labelled: int


class Probe(BaseModel):
    trained_at: datetime
    pretrained: str
    human_labels: int
    irrelevant_labels: int
    held_out: int
    held_out_precision: float | None = None
    held_out_recall: float | None = None
    held_out_zero_shot_precision: float | None = None
    held_out_zero_shot_recall: float | None = None


class FilterStatus(BaseModel):
    gate: str
    mode: str
    prior_log_odds: float
    probe: Probe | None = None


Label = Literal["relevant", "irrelevant"]

_BLACKLIST = TypeAdapter(Blacklist)
_ENTRY = TypeAdapter(BlacklistEntry)
_DOMAINS = TypeAdapter(DomainReport)
_CURATION = TypeAdapter(Curation)
_HISTORY = TypeAdapter(list[BlacklistChange])
_SAMPLE = TypeAdapter(DomainSample)
_LABELS = TypeAdapter(list[StoredLabel])
_LABEL_RESULT = TypeAdapter(LabelResult)
_FILTER = TypeAdapter(FilterStatus)
_PROBE = TypeAdapter(Probe)


class CuratorClient(ServiceClient):
    service = "curator"

    def blacklist(self) -> Blacklist:
        return self._call("GET", "/blacklist", _BLACKLIST)

    def add_to_blacklist(self, entry: str, reason: str, actor: str = "api") -> BlacklistEntry:
        """Add (or update) a domain (``example.org``) or a domain and path prefix (``example.org/images/``)."""
        return self._call("PUT", f"/blacklist/{segment(entry, safe='/')}", _ENTRY,
                          json={"reason": reason, "actor": actor})

    def remove_from_blacklist(self, entry: str, reason: str = "removed", actor: str = "api") -> Blacklist:
        return self._call("DELETE", f"/blacklist/{segment(entry, safe='/')}", _BLACKLIST,
                          params={"reason": reason, "actor": actor})

    def domain_scores(self, dataset: str, version: int | None = None) -> DomainReport:
        """Each domain's share of irrelevant images in a manifest version, and what the curator recommends."""
        params: dict[str, Any] = {"dataset": dataset}
        if version is not None:
            params["version"] = version
        return self._call("GET", "/domains", _DOMAINS, params=params)

    def curate(self, dataset: str, version: int | None = None, rules: dict[str, Any] | None = None) -> Curation:
        """Start a curation of a manifest version (default: the latest); it runs on a worker."""
        body: dict[str, Any] = {"dataset": dataset, "version": version}
        if rules is not None:
            body["rules"] = rules
        return self._call("POST", "/curations", _CURATION, json=body)

    def curation(self, curation_id: str) -> Curation:
        return self._call("GET", f"/curations/{segment(curation_id)}", _CURATION)

    def blacklist_history(self) -> list[BlacklistChange]:
        """Every change to the blacklist, oldest first: who, when, why."""
        return self._call("GET", "/blacklist/history", _HISTORY)

    def domain_sample(self, dataset: str, domain: str, version: int | None = None, n: int = 24,
                      seed: int | None = None) -> DomainSample:
        """A seeded random sample of one domain's images with their filter scores (what to look at)."""
        params: dict[str, Any] = {"dataset": dataset, "n": n}
        if version is not None:
            params["version"] = version
        if seed is not None:
            params["seed"] = seed
        return self._call("GET", f"/domains/{segment(domain)}/sample", _SAMPLE, params=params)

    def labels(self, dataset: str | None = None, domain: str | None = None) -> list[StoredLabel]:
        params = {name: value for name, value in (("dataset", dataset), ("domain", domain)) if value is not None}
        return self._call("GET", "/labels", _LABELS, params=params)

    def add_labels(self, dataset: str, labels: dict[str, Label], version: int | None = None,
                   actor: str = "api") -> LabelResult:
        """Label images (image id -> relevant | irrelevant); labels override the filter and train its probe."""
        body = {"dataset": dataset, "version": version, "actor": actor,
                "labels": [{"image_id": image_id, "label": label} for image_id, label in labels.items()]}
        return self._call("POST", "/labels", _LABEL_RESULT, json=body)

    def filter_status(self) -> FilterStatus:
        return self._call("GET", "/filter", _FILTER)

    def train_filter(self, dataset: str, threshold: float | None = None) -> Probe:
        """Refit the relevance gate's probe from the human labels; answers its held-out figures."""
        body: dict[str, Any] = {"dataset": dataset}
        if threshold is not None:
            body["threshold"] = threshold
        return self._call("POST", "/filter/train", _PROBE, json=body)
