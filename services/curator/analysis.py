"""Looking at one harvested image once: size, stage-1 score, perceptual hash and stage-2 features.

The results are cached per dataset in ``curation/scores/<dataset>.parquet`` (keyed by image_id and
sha256), so a second curation of the same images — after a blacklist change, say — does not fetch
and decode them again, and the learned filter retrains without touching the images.
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from services.curator.columnar import string_keys
from services.curator.filter.learned import N_FEATURES, learned_features
from services.curator.filter.stats import score_features, thumbnail, thumbnail_features
from shared.manifests import validate_dataset
from shared.storage import ObjectNotFound, ObjectStore

logger = logging.getLogger(__name__)

MAX_PIXELS = 64_000_000  # larger images are decompression bombs, not photos: refused before decoding

CACHE_SCHEMA = pa.schema([
    ("id_key", pa.uint64()),  # columnar.string_keys(image_id); the file is sorted by it for fast joins
    ("image_id", pa.string()),
    ("sha256", pa.string()),
    ("broken", pa.bool_()),
    ("error", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("stage1", pa.float32()),
    ("phash", pa.int64()),
    ("features", pa.list_(pa.float32(), N_FEATURES)),
])


@dataclass(frozen=True)
class ImageAnalysis:
    image_id: str
    sha256: str | None
    broken: bool
    error: str | None = None
    width: int | None = None
    height: int | None = None
    stage1: float | None = None
    phash: int | None = None
    features: np.ndarray | None = None


def analyze_bytes(image_id: str, sha256: str | None, data: bytes) -> ImageAnalysis:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            width, height = opened.size
            if width * height > MAX_PIXELS:  # checked here, not via Pillow's process-wide limit
                raise Image.DecompressionBombError(f"{width}x{height} pixels is over {MAX_PIXELS}")
            opened.draft("RGB", (256, 256))  # JPEG: decode at a reduced scale, much faster
            image = opened.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - any decoder failure means a broken image
        return ImageAnalysis(image_id, sha256, broken=True, error=f"{type(exc).__name__}: {exc}"[:200])
    import imagehash  # imports scipy: load it in the worker only, not in every API process

    rgb = thumbnail(image)
    stage1 = float(score_features(thumbnail_features(rgb)))
    # A 64-bit pHash as a signed int64 (Parquet has no uint64 we want to depend on).
    phash = int(np.array([int(str(imagehash.phash(image)), 16)], dtype=np.uint64).view(np.int64)[0])
    return ImageAnalysis(image_id, sha256, False, None, width, height, stage1, phash, learned_features(rgb))


def analyze_stored(store: ObjectStore, image_id: str, sha256: str | None, storage_key: str) -> ImageAnalysis:
    try:
        data = store.get_bytes(storage_key)
    except ObjectNotFound:
        return ImageAnalysis(image_id, sha256, broken=True, error=f"object {storage_key} is missing")
    return analyze_bytes(image_id, sha256, data)


def analyses_to_table(analyses: list[ImageAnalysis]) -> pa.Table:
    zeros = np.zeros(N_FEATURES, dtype=np.float32)
    ids = pa.array([a.image_id for a in analyses], pa.string())
    return pa.table({
        "id_key": pa.array(string_keys(ids)[0], pa.uint64()),
        "image_id": ids,
        "sha256": [a.sha256 for a in analyses],
        "broken": [a.broken for a in analyses],
        "error": [a.error for a in analyses],
        "width": [a.width for a in analyses],
        "height": [a.height for a in analyses],
        "stage1": [a.stage1 for a in analyses],
        "phash": [a.phash for a in analyses],
        "features": [(a.features if a.features is not None else zeros).tolist() for a in analyses],
    }, schema=CACHE_SCHEMA)


def cache_key(dataset: str) -> str:
    return f"curation/scores/{validate_dataset(dataset)}.parquet"


def read_cache(store: ObjectStore, dataset: str, columns: list[str] | None = None) -> pa.Table:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scores.parquet"
        try:
            store.get_file(cache_key(dataset), path)
        except ObjectNotFound:
            return CACHE_SCHEMA.empty_table().select(columns) if columns else CACHE_SCHEMA.empty_table()
        return pq.read_table(path, columns=columns)


def write_cache(store: ObjectStore, dataset: str, old: pa.Table, new: pa.Table) -> None:
    """Merge: new analyses replace old ones of the same image_id. (Last writer wins: it is only a cache.)"""
    if old.num_rows:
        keep = pa.compute.invert(pa.compute.is_in(old.column("image_id"), value_set=new.column("image_id")))
        merged = pa.concat_tables([old.filter(keep), new])
    else:
        merged = new
    merged = merged.sort_by("id_key")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scores.parquet"
        pq.write_table(merged, path, compression="zstd")
        store.put_file(cache_key(dataset), path, "application/vnd.apache.parquet")
