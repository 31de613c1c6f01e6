"""The downloader's API: import a source into a manifest, read manifests, start and follow harvests."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shared.clients.base import ServiceClient, segment
from shared.queue import JobState
from shared.schemas import ManifestInfo


class ManifestDetail(BaseModel):
    info: ManifestInfo
    summary: dict[str, Any] = Field(description="rows, observations, species, domains, licenses, status")


class HarvestProgress(BaseModel):
    """The counts a harvest reports while it runs and when it ends (0 / None before its first report)."""

    model_config = ConfigDict(extra="allow")  # the rest of what it reports (bytes, in_flight, ...) for `status`

    total: int = 0
    done: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    failed_by_reason: dict[str, int] = Field(default_factory=dict)
    skipped_by_reason: dict[str, int] = Field(default_factory=dict)
    images_per_s: float | None = None
    eta_s: float | None = None
    blacklist: str | None = Field(default=None, description="where its blacklist came from: curator, cache, seed")


class Harvest(BaseModel):
    id: str
    state: JobState
    dataset: str
    version: int
    manifest_version: int | None = None
    progress: HarvestProgress = Field(default_factory=HarvestProgress)
    error: str | None = None


_VERSIONS = TypeAdapter(list[ManifestInfo])
_INFO = TypeAdapter(ManifestInfo)
_DETAIL = TypeAdapter(ManifestDetail)
_HARVEST = TypeAdapter(Harvest)


class DownloaderClient(ServiceClient):
    service = "downloader"

    def import_source(self, dataset: str, source: Path | None = None, *, url: str | None = None,
                      species: str | None = None, genus: str | None = None,
                      family: str | None = None, group_observations: str | None = None) -> ManifestInfo:
        """Import a GBIF zip, a GBIF multimedia.txt or a CSV list (a file here, or a URL the downloader fetches)
        into a new version of ``dataset``; ``species`` gives a bare multimedia.txt its taxon;
        ``group_observations`` ('photographer_date_place', the default, or 'none') how CSV rows without an
        observation_id become observations."""
        form = {key: value for key, value in {"dataset": dataset, "url": url, "species": species, "genus": genus,
                                              "family": family, "group_observations": group_observations}.items()
                if value is not None}
        if source is None:
            return self._call("POST", "/manifests", _INFO, data=form)
        media_type = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
        with open(source, "rb") as stream:
            return self._call("POST", "/manifests", _INFO, data=form, files={"file": (source.name, stream, media_type)})

    def manifest_versions(self, dataset: str) -> list[ManifestInfo]:
        return self._call("GET", f"/manifests/{segment(dataset)}", _VERSIONS)

    def manifest(self, dataset: str, version: int) -> ManifestDetail:
        return self._call("GET", f"/manifests/{segment(dataset)}/{version}", _DETAIL)

    def harvest(self, dataset: str, version: int | None = None, options: dict[str, Any] | None = None) -> Harvest:
        """Start harvesting a manifest version's images (default: the latest); it runs on a worker."""
        body = {"dataset": dataset, "version": version, "options": options or {}}
        return self._call("POST", "/harvests", _HARVEST, json=body)

    def harvest_status(self, harvest_id: str) -> Harvest:
        return self._call("GET", f"/harvests/{segment(harvest_id)}", _HARVEST)

    def cancel_harvest(self, harvest_id: str) -> Harvest:
        """Cancel it; what it stored so far stays stored."""
        return self._call("DELETE", f"/harvests/{segment(harvest_id)}", _HARVEST)

    def resume_harvest(self, harvest_id: str) -> Harvest:
        """Start an interrupted harvest again; images already stored are not fetched again."""
        return self._call("POST", f"/harvests/{segment(harvest_id)}/resume", _HARVEST)
