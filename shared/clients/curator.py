"""The curator's API: the blacklist, per-domain scores, and curations (a manifest version in, a curated one out)."""

from __future__ import annotations

from typing import Any

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


_BLACKLIST = TypeAdapter(Blacklist)
_ENTRY = TypeAdapter(BlacklistEntry)
_DOMAINS = TypeAdapter(DomainReport)
_CURATION = TypeAdapter(Curation)


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
