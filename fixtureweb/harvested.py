"""A harvested manifest of synthetic species photos (fixtureweb), for tests, benchmarks and CPU demos.

Renders JPEGs, stores them under ``images/synthetic/...`` in the real object store and writes a manifest
version whose rows look harvested (status ok, storage_key, species/genus/family, several photos per
observation), as the downloader would leave them.
"""

from __future__ import annotations

import hashlib
import io
import logging
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from shared.manifests import RECORD_SCHEMA, ManifestStore
from shared.schemas import ExclusionReason, HarvestStatus, ManifestInfo, Operation
from shared.storage import ObjectStore

logger = logging.getLogger(__name__)


def write_synthetic_manifest(
    store: ObjectStore,
    dataset: str,
    n_classes: int = 4,
    images_per_class: int = 40,
    photos_per_observation: int = 3,
    size: int = 64,
    seed: int = 0,
    extra_rows: bool = True,
) -> ManifestInfo:
    """Render and store the photos, then write one manifest version; returns its info.

    With ``extra_rows`` a few rows that must never be trained on are added: a failed download and a
    curated-out (excluded) image, each labelled with a real class.
    """
    from fixtureweb.species import SpeciesCatalog

    catalog = SpeciesCatalog(n_classes, seed=seed)
    jobs = []
    for class_index, species in enumerate(catalog.species):
        for photo in range(images_per_class):
            observation = f"{dataset}-obs-{class_index}-{photo // photos_per_observation}"
            jobs.append((class_index, species, photo, observation))

    def render(job: tuple) -> dict[str, object]:
        class_index, species, photo, observation = job
        image = catalog.render(class_index, seed=photo * 7919 + class_index, size=size)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        data = buffer.getvalue()
        image_id = hashlib.sha256(f"{dataset}:{class_index}:{photo}".encode()).hexdigest()[:24]
        key = f"images/synthetic/{dataset}/{image_id}.jpg"
        store.put_bytes(key, data, "image/jpeg")
        return {
            "image_id": image_id, "observation_id": observation, "source": "csv",
            "species": species.name, "genus": species.genus.name, "family": species.family,
            "scientific_name": species.scientific_name, "url": f"http://fungi-atlas.test/{image_id}.jpg",
            "domain": "fungi-atlas.test", "status": HarvestStatus.ok.value, "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data), "width": size, "height": size, "storage_key": key,
        }

    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(render, jobs))
    if extra_rows:
        first = catalog.species[0]
        rows.append({**rows[0], "image_id": "failed-row", "status": HarvestStatus.failed.value,
                     "storage_key": None, "error": "HTTP 500", "observation_id": "obs-failed",
                     "species": first.name})
        rows.append({**rows[1], "image_id": "excluded-row", "observation_id": "obs-excluded",
                     "excluded_reason": ExclusionReason.irrelevant.value})
    table = pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)
    info = ManifestStore(store).write(dataset, table, Operation.harvest, source="synthetic")
    logger.info("synthetic dataset %s v%d: %d classes x %d images", dataset, info.version, n_classes,
                images_per_class)
    return info
