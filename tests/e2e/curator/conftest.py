"""Harvested manifests built without the downloader: fixture-web pictures rendered, stored in the real
S3 server under ``images/``, and a manifest version written with status ok + storage_key (operation harvest)."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

import httpx
import pyarrow as pa
import pytest

from fixtureweb.config import WebConfig, preset
from fixtureweb.content import SPECIES, ContentStore, ImageSpec, encode_token
from fixtureweb.encoding import ImageFormat
from fixtureweb.irrelevant import IrrelevantKind
from fixtureweb.species import SpeciesCatalog
from shared.manifests import ManifestStore
from shared.schemas import Operation

IMAGE_SIDE = 160
_CONTENT = ContentStore(SpeciesCatalog(10, 0), cache_bytes=64 * 1024 * 1024)


@lru_cache(maxsize=4096)
def picture_bytes(kind: str, index: int, seed: int, quality: int = 85) -> bytes:
    return _CONTENT.image_bytes(ImageSpec(kind, index, seed), ImageFormat.JPEG, IMAGE_SIDE, quality)


@dataclass
class Harvest:
    dataset: str
    version: int
    table: pa.Table
    irrelevant: dict[str, bool] = field(default_factory=dict)  # image_id -> ground truth
    herbarium: tuple[str, ...] = ()
    duplicates: dict[str, str] = field(default_factory=dict)  # copy image_id -> original image_id


def build_harvest(manifests: ManifestStore, dataset: str, web: WebConfig, images_per_domain: Callable[[int], int],
                  seed: int = 0, failed_every: int = 0, duplicate_pairs: int = 0) -> Harvest:
    """Rows for every domain of ``web`` (image counts by domain index), irrelevant with the domain's share."""
    rng = random.Random(f"harvest:{dataset}:{seed}")
    kinds = list(IrrelevantKind)
    rows: list[dict[str, object]] = []
    blobs: dict[str, bytes] = {}
    truth: dict[str, bool] = {}
    counter = 0
    for d_index, domain in enumerate(web.domains):
        for _ in range(images_per_domain(d_index)):
            counter += 1
            image_seed = seed * 100_000 + counter
            if rng.random() < domain.irrelevant_share:
                spec = ImageSpec(rng.choice(kinds).value, 0, image_seed)
            else:
                spec = ImageSpec(SPECIES, image_seed % 10, image_seed)
            rows.append(_row(domain.name, spec, counter, failed_every and counter % failed_every == 0))
            if rows[-1]["status"] == "ok":
                blobs[str(rows[-1]["storage_key"])] = picture_bytes(spec.kind, spec.index, spec.seed)
                _finish(rows[-1], blobs[str(rows[-1]["storage_key"])])
            truth[str(rows[-1]["image_id"])] = spec.irrelevant
    duplicates: dict[str, str] = {}
    originals = [r for r in rows if r["status"] == "ok" and not truth[str(r["image_id"])]][:duplicate_pairs]
    for n, original in enumerate(originals):
        counter += 1
        copy = dict(original)
        copy["image_id"] = f"dup{n}-" + str(original["image_id"])
        copy["observation_id"] = f"obs-dup-{n}"
        copy["url"] = str(original["url"]) + f"?copy={n}"
        copy["storage_key"] = f"images/{copy['image_id']}.jpg"
        spec_kind, spec_index, spec_seed = original["_spec"]  # type: ignore[misc]
        # Every other copy is re-encoded: different bytes, same picture.
        data = picture_bytes(spec_kind, spec_index, spec_seed, 60 if n % 2 else 85)
        blobs[str(copy["storage_key"])] = data
        _finish(copy, data)
        rows.append(copy)
        truth[str(copy["image_id"])] = False
        duplicates[str(copy["image_id"])] = str(original["image_id"])
    store = manifests.store
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: store.put_bytes(item[0], item[1], "image/jpeg"), blobs.items()))
    for row in rows:
        row.pop("_spec", None)
    table = pa.Table.from_pylist(rows)
    imported = manifests.write(dataset, table.drop_columns(["status", "sha256", "bytes", "width", "height",
                                                             "storage_key", "error"]).append_column(
        "status", pa.array(["pending"] * table.num_rows)), Operation.import_)
    info = manifests.write(dataset, table, Operation.harvest, parent=imported.version)
    herbarium = tuple(d.name for d in web.domains if d.specimen_host)
    return Harvest(dataset, info.version, manifests.read(dataset, info.version), truth, herbarium, duplicates)


def _row(domain: str, spec: ImageSpec, counter: int, failed: bool) -> dict[str, object]:
    url = f"http://{domain}/media/{encode_token(spec, counter % 200)}.jpg"
    image_id = hashlib.sha256(url.encode()).hexdigest()[:32]
    row: dict[str, object] = {
        "image_id": image_id, "observation_id": f"obs-{counter}", "source": "gbif", "url": url, "domain": domain,
        "species": f"species {spec.index}" if spec.kind == SPECIES else None,
        "status": "failed" if failed else "ok", "error": "HTTP 503" if failed else None,
        "storage_key": None if failed else f"images/{image_id}.jpg", "_spec": (spec.kind, spec.index, spec.seed),
    }
    return row


def _finish(row: dict[str, object], data: bytes) -> None:
    import io

    from PIL import Image

    width, height = Image.open(io.BytesIO(data)).size
    row.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), width=width, height=height)


@pytest.fixture
def harvest_builder(manifests: ManifestStore) -> Callable[..., Harvest]:
    def build(dataset: str = "fungi", **kwargs: object) -> Harvest:
        return build_harvest(manifests, dataset, **kwargs)  # type: ignore[arg-type]

    return build


@pytest.fixture
def small_web() -> WebConfig:
    return preset(n_domains=5, n_herbarium=1, faults=False, image_size=IMAGE_SIDE)


@pytest.fixture
def web20() -> WebConfig:
    return preset(n_domains=20, n_herbarium=3, faults=False, image_size=IMAGE_SIDE)


def wait_for_curation(client: httpx.Client, curation_id: str, timeout: float = 120) -> dict[str, object]:
    """Poll GET /curations/{id} until the job ends (a poll loop, not an assertion on time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/curations/{curation_id}").json()
        if body["state"] in ("completed", "failed"):
            return body
        time.sleep(0.3)
    raise AssertionError(f"curation {curation_id} did not finish in {timeout} s: {body}")


@pytest.fixture
def await_curation() -> Callable[..., dict[str, object]]:
    return wait_for_curation


@pytest.fixture
def curator(run_service, run_worker, settings):  # type: ignore[no-untyped-def]
    """The curator under uvicorn plus one RQ worker on the curate queue, against the real stack."""
    service = run_service("curator", "services.curator.main:app", settings)
    run_worker("curate-worker", ["curate"], settings)
    with httpx.Client(base_url=service.url, timeout=60,
                      headers={"Authorization": f"Bearer {settings.api_token}"}) as client:
        yield client
