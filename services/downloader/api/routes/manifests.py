"""``/manifests``: import a source (upload or URL) into a new manifest version; list and summarise versions."""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

import aiohttp
from fastapi import APIRouter, File, Form, HTTPException, UploadFile, status
from fastapi.concurrency import run_in_threadpool

from services.downloader.api.deps import DownloaderSettingsDep, ManifestsDep
from services.downloader.core.config import DownloaderSettings
from services.downloader.harvest.fetch import FetchLimits, Outcome, fetch_image
from services.downloader.importers import ImportFailed, ObservationGrouping, Taxon, import_source
from services.downloader.schemas import DatasetSummary, ManifestDetail
from shared.auth import TokenDep
from shared.manifests import ManifestError, ManifestNotFound, summary
from shared.network_safety import GuardedResolver
from shared.schemas import DatasetName, ManifestInfo

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/manifests", tags=["manifests"])

NO_SOURCE = "give the source as a file upload ('file') or as a URL ('url')"
TWO_SOURCES = "give either a file or a URL, not both"
NOT_FOUND = "no such dataset or version"
TOO_LARGE = "the source is larger than the upload limit"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _file_name(name: str | None, fallback: str) -> str:
    cleaned = _SAFE_NAME.sub("_", Path(name or "").name).strip("._")
    return cleaned[:100] or fallback


async def _save_upload(upload: UploadFile, directory: Path, limit: int) -> Path:
    path = directory / _file_name(upload.filename, "upload")
    size = 0
    with open(path, "wb") as stream:
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, TOO_LARGE)
            stream.write(chunk)
    return path


async def _download(url: str, directory: Path, settings: DownloaderSettings) -> Path:
    resolver = GuardedResolver(settings.resolve, settings.allow_loopback)
    connector = aiohttp.TCPConnector(resolver=resolver)
    async with aiohttp.ClientSession(connector=connector, trust_env=False,
                                     timeout=aiohttp.ClientTimeout(total=300, sock_read=60),
                                     headers={"User-Agent": settings.user_agent}) as session:
        fetched = await fetch_image(session, url, FetchLimits(settings.max_upload_bytes, 5, settings.allow_loopback))
    if fetched.outcome is not Outcome.ok:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY,
                            {"file": url[:300], "line": None, "column": None,
                             "message": f"could not fetch the source URL: {fetched.error}"})
    path = directory / _file_name(unquote(urlsplit(url).path.rsplit("/", 1)[-1]), "source")
    path.write_bytes(fetched.data)
    return path


@router.post("", response_model=ManifestInfo, status_code=status.HTTP_201_CREATED,
             responses={422: {"description": "the source file is wrong: file, line, column, message"}})
async def create(
    _: TokenDep,
    manifests: ManifestsDep,
    settings: DownloaderSettingsDep,
    dataset: Annotated[DatasetName, Form(description="dataset name: a-z 0-9 . _ -")],
    file: Annotated[UploadFile | None, File(description="GBIF zip, multimedia.txt or CSV")] = None,
    url: Annotated[str | None, Form(description="where to fetch the source instead of an upload")] = None,
    species: Annotated[str | None, Form(description="taxon of every row of a bare multimedia.txt")] = None,
    genus: Annotated[str | None, Form()] = None,
    family: Annotated[str | None, Form()] = None,
    group_observations: Annotated[ObservationGrouping, Form(
        description="CSV rows without observation_id: group by recorded_by + event_date + place + species, or "
        "none")] = ObservationGrouping.photographer_date_place,
) -> ManifestInfo:
    """Import a source into a new version of ``dataset``."""
    if file is None and not url:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, NO_SOURCE)
    if file is not None and url:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, TWO_SOURCES)
    taxon = Taxon(species.strip(), genus=genus, family=family) if species and species.strip() else None
    with tempfile.TemporaryDirectory(prefix="sporeprint-import-") as tmp:
        if file is not None:
            path = await _save_upload(file, Path(tmp), settings.max_upload_bytes)
        else:
            assert url is not None
            path = await _download(url, Path(tmp), settings)
        try:
            return await run_in_threadpool(import_source, path, dataset, manifests, taxon, group_observations)
        except ImportFailed as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, exc.as_dict()) from exc
        except ManifestError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from exc


@router.get("", response_model=list[DatasetSummary])
def list_datasets(manifests: ManifestsDep) -> list[DatasetSummary]:
    out = []
    for dataset in manifests.datasets():
        versions = manifests.versions(dataset)
        out.append(DatasetSummary(dataset=dataset, latest_version=manifests.latest_version(dataset),
                                  versions=len(versions)))
    return out


NOT_FOUND_RESPONSE: dict[int | str, dict[str, Any]] = {404: {"description": "no such dataset or version"}}


@router.get("/{dataset}", response_model=list[ManifestInfo], responses=NOT_FOUND_RESPONSE)
def list_versions(dataset: DatasetName, manifests: ManifestsDep) -> list[ManifestInfo]:
    versions = manifests.versions(dataset)
    if not versions:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return versions


@router.get("/{dataset}/{version}", response_model=ManifestDetail, responses=NOT_FOUND_RESPONSE)
def show(dataset: DatasetName, version: int, manifests: ManifestsDep) -> ManifestDetail:
    """A version's info and summary: rows, classes, domains, licences, statuses."""
    try:
        info = manifests.info(dataset, version)
        table = manifests.read(dataset, version, columns=["observation_id", "species", "domain", "license",
                                                           "status"])
    except ManifestNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from exc
    return ManifestDetail(info=info, summary=summary(table))

