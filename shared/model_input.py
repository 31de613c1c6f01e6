"""The one way a photo becomes model input, shared by training, serving and the relevance gate.

Training (``tf.data``) and serving (an upload decoded by Pillow) must give a model the same tensor for the
same stored file, or the served model sees images unlike the ones it learnt from. So both end in
:func:`resize_for_model`: TensorFlow's bilinear resize with antialiasing (an area-weighted filter when
shrinking, like Pillow's), from full-resolution RGB to a ``size`` x ``size`` square (the aspect ratio is
squashed, as in training). JPEGs decode with the same DCT in both (:func:`decode_tensor`), and transparency
is composited on white everywhere (:func:`shared.imaging.to_rgb`), as the harvester stores it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from shared.imaging import to_rgb


def resize_for_model(image: Any, size: int) -> Any:
    """``image`` (H, W, 3) uint8 RGB, a numpy array or a tensor -> float32 tensor (size, size, 3) in [0, 255]."""
    resized = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    return tf.clip_by_value(tf.round(resized), 0.0, 255.0)


def photo_to_model_input(photo: Image.Image, size: int) -> np.ndarray:
    """A decoded photo (any mode) as the model's float32 input array."""
    rgb = np.asarray(to_rgb(photo), dtype=np.uint8)
    return np.asarray(resize_for_model(rgb, size), dtype=np.float32)


def decode_tensor(data: Any) -> Any:
    """Encoded bytes (a string tensor) -> uint8 RGB tensor (H, W, 3), decoded as Pillow decodes them.

    JPEGs take libjpeg's accurate integer DCT, which is Pillow's default (TensorFlow's own default DCT differs
    by about 1/255 per pixel); other formats take ``decode_image``. Stored images are RGB JPEGs (the harvester
    writes them), so no alpha channel reaches this point.
    """
    def jpeg() -> Any:
        return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")

    def other() -> Any:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image.set_shape((None, None, 3))
        return image

    return tf.cond(tf.io.is_jpeg(data), jpeg, other)
