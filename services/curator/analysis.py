"""Looking at one harvested image once: size, perceptual hash, and what the relevance gate reads in it.

Decoding runs in a thread pool (fetch + decode + image statistics + the gate's input tensor per image); the
gate (:mod:`shared.relevance.gate`) then reads the decoded images in batches of :data:`GATE_BATCH` in the
calling thread, its interpreter using every CPU the worker has, while the pool decodes the next batch.

The results are cached per dataset in ``curation/scores/<dataset>.parquet`` (keyed by image_id, sha256 and the
pretrained model's name), so a second curation of the same images, after a blacklist change or a new probe,
does not fetch, decode or read them again, and the probe retrains from the cache without touching the images.
A cache written by another pretrained model, or with an older schema, counts as not analysed.
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from services.curator.columnar import string_keys
from shared.imaging import upright_rgb
from shared.manifests import validate_dataset
from shared.relevance.gate import GateReading, RelevanceGate
from shared.relevance.stats import FEATURE_NAMES, image_features, score_features
from shared.storage import ObjectNotFound, ObjectStore

logger = logging.getLogger(__name__)

MAX_PIXELS = 64_000_000  # larger images are decompression bombs, not photos: refused before decoding
N_STATS = len(FEATURE_NAMES)
EMBEDDING_DIM = 1280
GATE_BATCH = 32

CACHE_SCHEMA = pa.schema([
    ("id_key", pa.uint64()),  # columnar.string_keys(image_id); the file is sorted by it for fast joins
    ("image_id", pa.string()),
    ("sha256", pa.string()),
    ("gate", pa.string()),  # the pretrained model's name: another model's analyses are recomputed
    ("broken", pa.bool_()),
    ("error", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("statistics", pa.float32()),  # the fixed-weight statistics baseline (fitted to drawn fixtures)
    ("phash", pa.int64()),
    ("fungus_probability", pa.float32()),  # the pretrained model's summed fungus-class probability
    ("blank", pa.bool_()),  # a flat colour: no evidence, never relevant (RelevanceGate.relevance)
    ("stats", pa.list_(pa.float32(), N_STATS)),  # shared.relevance.stats.FEATURE_NAMES
    ("embedding", pa.list_(pa.float16(), EMBEDDING_DIM)),  # L2-normalised; float16 is plenty for a probe
])


@dataclass(frozen=True)
class ImageAnalysis:
    image_id: str
    sha256: str | None
    broken: bool
    error: str | None = None
    width: int | None = None
    height: int | None = None
    statistics: float | None = None
    phash: int | None = None
    stats: np.ndarray | None = None
    fungus_probability: float | None = None
    blank: bool | None = None
    embedding: np.ndarray | None = None
    gate: str | None = None


@dataclass(frozen=True)
class DecodedImage:
    """An image decoded and measured, waiting for the gate (``model_input`` is None when broken)."""

    analysis: ImageAnalysis
    model_input: np.ndarray | None = None


def decode_bytes(image_id: str, sha256: str | None, data: bytes, gate: RelevanceGate) -> DecodedImage:
    """Everything but the gate's reading: thread-safe, run in a pool."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            width, height = opened.size
            if width * height > MAX_PIXELS:  # checked here, not via Pillow's process-wide limit
                raise Image.DecompressionBombError(f"{width}x{height} pixels is over {MAX_PIXELS}")
            # Every pixel is decoded (no JPEG draft mode) and EXIF orientation applied, as /predict decodes an
            # upload: the same stored file must give the gate the same input in both services.
            opened.load()
            image = upright_rgb(opened)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means a broken image
        return DecodedImage(ImageAnalysis(image_id, sha256, broken=True, error=f"{type(exc).__name__}: {exc}"[:200],
                                          gate=gate.pretrained.name))
    import imagehash  # imports scipy: load it in the worker only, not in every API process

    stats = image_features(image)
    # A 64-bit pHash as a signed int64 (Parquet has no uint64 we want to depend on).
    phash = int(np.array([int(str(imagehash.phash(image)), 16)], dtype=np.uint64).view(np.int64)[0])
    analysis = ImageAnalysis(image_id, sha256, False, None, width, height, float(score_features(stats)), phash,
                             stats, gate=gate.pretrained.name)
    return DecodedImage(analysis, gate.input_for(image))


def decode_stored(store: ObjectStore, image_id: str, sha256: str | None, storage_key: str,
                  gate: RelevanceGate) -> DecodedImage:
    try:
        data = store.get_bytes(storage_key)
    except ObjectNotFound:
        return DecodedImage(ImageAnalysis(image_id, sha256, broken=True, error=f"object {storage_key} is missing",
                                          gate=gate.pretrained.name))
    return decode_bytes(image_id, sha256, data, gate)


def read_decoded(gate: RelevanceGate, decoded: list[DecodedImage]) -> list[ImageAnalysis]:
    """The gate's reading of one batch of decoded images (broken ones pass through)."""
    ready = [i for i, d in enumerate(decoded) if d.model_input is not None]
    out = [d.analysis for d in decoded]
    if not ready:
        return out
    reading = gate.read(np.stack([decoded[i].model_input for i in ready]),  # type: ignore[misc]
                        np.stack([decoded[i].analysis.stats for i in ready]))  # type: ignore[misc]
    for row, i in enumerate(ready):
        out[i] = replace(out[i], fungus_probability=float(reading.fungus_probability[row]),
                         blank=bool(reading.blank[row]), embedding=reading.embedding[row])
    return out


def analyze_bytes(image_id: str, sha256: str | None, data: bytes, gate: RelevanceGate) -> ImageAnalysis:
    """One image, decoded and read (tests and one-offs; curations batch through :func:`analyze_stored_many`)."""
    return read_decoded(gate, [decode_bytes(image_id, sha256, data, gate)])[0]


def analyze_stored_many(store: ObjectStore, gate: RelevanceGate, items: list[tuple[str, str | None, str]],
                        concurrency: int) -> Iterator[ImageAnalysis]:
    """Analyses of ``(image_id, sha256, storage_key)`` items in order: the pool decodes the next batch while the
    gate reads the current one, and at most two batches of decoded images are in memory."""
    with ThreadPoolExecutor(concurrency) as pool:
        def submit(start: int) -> list[Future[DecodedImage]]:
            return [pool.submit(decode_stored, store, image_id, sha, key, gate)
                    for image_id, sha, key in items[start:start + GATE_BATCH]]

        pending = submit(0)
        for start in range(0, len(items), GATE_BATCH):
            batch = [future.result() for future in pending]
            pending = submit(start + GATE_BATCH)
            yield from read_decoded(gate, batch)


def analyses_to_table(analyses: list[ImageAnalysis]) -> pa.Table:
    n = len(analyses)
    ids = pa.array([a.image_id for a in analyses], pa.string())
    missing_stats = np.array([a.stats is None for a in analyses], dtype=bool)
    missing_embedding = np.array([a.embedding is None for a in analyses], dtype=bool)
    stats = np.zeros((n, N_STATS), np.float32)
    embedding = np.zeros((n, EMBEDDING_DIM), np.float16)
    for i, a in enumerate(analyses):
        if a.stats is not None:
            stats[i] = a.stats
        if a.embedding is not None:
            embedding[i] = a.embedding
    return pa.table({
        "id_key": pa.array(string_keys(ids)[0], pa.uint64()),
        "image_id": ids,
        "sha256": pa.array([a.sha256 for a in analyses], pa.string()),
        "gate": pa.array([a.gate for a in analyses], pa.string()),
        "broken": [a.broken for a in analyses],
        "error": pa.array([a.error for a in analyses], pa.string()),
        "width": pa.array([a.width for a in analyses], pa.int32()),
        "height": pa.array([a.height for a in analyses], pa.int32()),
        "statistics": pa.array([a.statistics for a in analyses], pa.float32()),
        "phash": pa.array([a.phash for a in analyses], pa.int64()),
        "fungus_probability": pa.array([a.fungus_probability for a in analyses], pa.float32()),
        "blank": pa.array([a.blank for a in analyses], pa.bool_()),
        "stats": pa.FixedSizeListArray.from_arrays(pa.array(stats.ravel()), type=CACHE_SCHEMA.field("stats").type,
                                                   mask=pa.array(missing_stats)),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(embedding.ravel()),
                                                       type=CACHE_SCHEMA.field("embedding").type,
                                                       mask=pa.array(missing_embedding)),
    }, schema=CACHE_SCHEMA)


def reading_of(table: pa.Table) -> GateReading:
    """The gate's reading of cached rows (all analysed, none broken): what the probe and the gate score from."""
    def matrix(name: str, width: int) -> np.ndarray:
        if table.num_rows == 0 or name not in table.column_names:  # not read: a zero-shot score needs neither
            return np.zeros((table.num_rows, width), np.float32)
        column = table.column(name).combine_chunks()
        return np.asarray(column.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(-1, width)

    fungus = np.asarray(table.column("fungus_probability").to_numpy(zero_copy_only=False), np.float64)
    blank = np.asarray(pa.compute.fill_null(table.column("blank"), False).to_numpy(zero_copy_only=False), bool)
    return GateReading(fungus, matrix("embedding", EMBEDDING_DIM), np.full(table.num_rows, -1, np.int32),
                       matrix("stats", N_STATS), blank)


def cache_key(dataset: str) -> str:
    return f"curation/scores/{validate_dataset(dataset)}.parquet"


def is_current_cache(names: list[str]) -> bool:
    """Whether a cache with these columns was written with :data:`CACHE_SCHEMA` (an older one is not analysed)."""
    return set(names) == set(CACHE_SCHEMA.names)


def conform_cache(table: pa.Table) -> pa.Table | None:
    """``table`` (all columns, or some) cast to those of :data:`CACHE_SCHEMA`; None if it does not fit them."""
    try:
        return table.cast(pa.schema([CACHE_SCHEMA.field(name) for name in table.column_names]))
    except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        return None


def read_cache(store: ObjectStore, dataset: str, columns: list[str] | None = None) -> pa.Table:
    """The dataset's analysis cache (``columns`` only, if given, and only those are read); empty if there is
    none or its schema is old."""
    empty = CACHE_SCHEMA.empty_table().select(columns or CACHE_SCHEMA.names)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scores.parquet"
        try:
            store.get_file(cache_key(dataset), path)
        except ObjectNotFound:
            return empty
        if not is_current_cache(pq.read_schema(path).names):
            logger.info("analysis cache of %s has an older schema: every image counts as not analysed", dataset)
            return empty
        table = conform_cache(pq.read_table(path, columns=columns or CACHE_SCHEMA.names))
        if table is None:
            logger.warning("analysis cache of %s does not match the cache schema: ignored", dataset)
            return empty
        return table


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
