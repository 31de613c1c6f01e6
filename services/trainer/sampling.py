"""Stateless random draws and one resampling of a batch at arbitrary source coordinates: the tools both the
recipe's augmentations (:mod:`services.trainer.augment`) and RandAugment (:mod:`services.trainer.randaugment`)
build on."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared.training import AugmentationConfig


def seeds(seed: tf.Tensor, count: int) -> tf.Tensor:
    """``count`` independent stateless seeds (count, 2) from one."""
    return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=count)


def uniform(seed: tf.Tensor, shape: tf.Tensor | list[tf.Tensor | int], low: float, high: float) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high)


def centred_grid(height: int, width: int) -> tuple[tf.Tensor, tf.Tensor]:
    ys, xs = np.meshgrid(np.arange(height, dtype="float32") - (height - 1) / 2,
                         np.arange(width, dtype="float32") - (width - 1) / 2, indexing="ij")
    return tf.constant(xs.reshape(1, -1)), tf.constant(ys.reshape(1, -1))


def _reflect(coordinate: tf.Tensor, size: int) -> tf.Tensor:
    """Pixel coordinates mirrored into [-0.5, size - 0.5] (d c b a | a b c d | d c b a, as Keras' 'reflect')."""
    period = 2.0 * size
    folded = tf.math.floormod(coordinate + 0.5, period)
    return tf.where(folded >= size, period - folded, folded) - 0.5


def resample(images: tf.Tensor, source_x: tf.Tensor, source_y: tf.Tensor, config: AugmentationConfig) -> tf.Tensor:
    """Resample (B, H, W, C) at per-output-pixel source coordinates (B, H*W) in pixel units (centres at i)."""
    height, width = int(images.shape[1]), int(images.shape[2])
    shape = tf.shape(images)
    flat = tf.reshape(images, [shape[0], height * width, -1])
    if config.fill_mode == "reflect":
        source_x, source_y = _reflect(source_x, width), _reflect(source_y, height)
    # Outside the image (nearest fill), or the last half pixel of a reflection: the nearest edge pixel.
    source_x = tf.clip_by_value(source_x, 0.0, width - 1.0)
    source_y = tf.clip_by_value(source_y, 0.0, height - 1.0)

    def gather(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        return tf.gather(flat, tf.cast(y, tf.int32) * width + tf.cast(x, tf.int32), batch_dims=1)

    if config.interpolation == "nearest":
        return tf.reshape(gather(tf.round(source_x), tf.round(source_y)), shape)
    x0, y0 = tf.floor(source_x), tf.floor(source_y)
    x1, y1 = tf.minimum(x0 + 1, width - 1.0), tf.minimum(y0 + 1, height - 1.0)
    wx, wy = (source_x - x0)[..., None], (source_y - y0)[..., None]
    values = [tf.cast(gather(x, y), tf.float32) for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
    top = values[0] * (1 - wx) + values[1] * wx
    bottom = values[2] * (1 - wx) + values[3] * wx
    return tf.reshape(top * (1 - wy) + bottom * wy, shape)
