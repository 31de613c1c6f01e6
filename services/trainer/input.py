"""The tf.data input pipeline: cached files -> decode -> resize -> batch -> augment -> prefetch.

Augmentation runs on whole batches of uint8 images: rotation (any angle), zoom and flips are folded into one
affine map per image, and the batch is resampled by a single batched ``tf.gather`` (nearest neighbour, edge
pixels extended like ImageDataGenerator's default ``fill_mode="nearest"``). On a CPU that is about four times
faster than ``ImageProjectiveTransformV3`` (Keras' RandomRotation), so rotating by up to 180 degrees costs
little over plain decoding (ImageDataGenerator rotated image by image in Python, which is what doubled the
old epoch time). Output images are float32 RGB in [0, 255], the model's input contract (shared/registry.py);
normalisation lives inside the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from shared.model_input import decode_tensor, resize_for_model
from shared.training import AugmentationConfig

AUTOTUNE = tf.data.AUTOTUNE


def decode_resize(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """One file -> uint8 RGB of image_size (uint8 until augmentation: a quarter of the bytes to move)."""
    data = tf.io.read_file(path)
    image = tf.cast(resize_for_model(decode_tensor(data), image_size), tf.uint8)  # the path serving takes too
    image.set_shape((image_size, image_size, 3))
    return image


def _centred_grid(height: int, width: int) -> tuple[tf.Tensor, tf.Tensor]:
    ys, xs = np.meshgrid(np.arange(height, dtype="float32") - (height - 1) / 2,
                         np.arange(width, dtype="float32") - (width - 1) / 2, indexing="ij")
    return tf.constant(xs.reshape(1, -1)), tf.constant(ys.reshape(1, -1))


def geometric_augment(images: tf.Tensor, config: AugmentationConfig) -> tf.Tensor:
    """Random rotation, zoom and flips of a batch (B, H, W, C) with static H and W, any dtype."""
    height, width = int(images.shape[1]), int(images.shape[2])
    batch = tf.shape(images)[0]
    grid_x, grid_y = _centred_grid(height, width)
    angle = tf.random.uniform([batch, 1], -1.0, 1.0) * (config.rotation * math.pi / 180.0)
    scale = 1.0 + tf.random.uniform([batch, 1], -config.zoom, config.zoom) if config.zoom else tf.ones([batch, 1])
    flip_x = _random_sign(batch) if config.flip_horizontal else tf.ones([batch, 1])
    flip_y = _random_sign(batch) if config.flip_vertical else tf.ones([batch, 1])
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # Output pixel p samples input pixel c + M (p - c), with M = R(angle) F / scale and c the centre.
    source_x = cos * flip_x * grid_x - sin * flip_y * grid_y + (width - 1) / 2 + 0.5
    source_y = sin * flip_x * grid_x + cos * flip_y * grid_y + (height - 1) / 2 + 0.5
    source_x = tf.clip_by_value(source_x, 0.0, width - 0.5)  # outside the image: the nearest edge pixel
    source_y = tf.clip_by_value(source_y, 0.0, height - 0.5)
    index = tf.cast(source_y, tf.int32) * width + tf.cast(source_x, tf.int32)
    flat = tf.reshape(images, [batch, height * width, -1])
    return tf.reshape(tf.gather(flat, index, batch_dims=1), tf.shape(images))


def augment_batch(images: tf.Tensor, config: AugmentationConfig) -> tf.Tensor:
    """Geometric augmentation, then brightness/contrast; returns float32 in [0, 255]."""
    if config.rotation or config.zoom or config.flip_horizontal or config.flip_vertical:
        images = geometric_augment(images, config)
    images = tf.cast(images, tf.float32)
    batch = tf.shape(images)[0]
    if config.brightness:
        images = images + tf.random.uniform([batch, 1, 1, 1], -config.brightness, config.brightness) * 255.0
    if config.contrast:
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        factor = 1.0 + tf.random.uniform([batch, 1, 1, 1], -config.contrast, config.contrast)
        images = (images - mean) * factor + mean
    if config.brightness or config.contrast:
        images = tf.clip_by_value(images, 0.0, 255.0)
    return images


def _random_sign(batch: tf.Tensor) -> tf.Tensor:
    return tf.where(tf.random.uniform([batch, 1]) < 0.5, -1.0, 1.0)


def build_dataset(
    paths: Sequence[str],
    labels: Sequence[int],
    image_size: int,
    batch_size: int,
    augmentation: AugmentationConfig | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of (float32 images in [0, 255], int32 labels); shuffled and augmented for training only."""
    dataset = tf.data.Dataset.from_tensor_slices((list(paths), tf.constant(list(labels), tf.int32)))
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(lambda path, label: (decode_resize(path, image_size), label),
                          num_parallel_calls=AUTOTUNE, deterministic=not shuffle)
    dataset = dataset.batch(batch_size, num_parallel_calls=AUTOTUNE)
    if augmentation is not None and augmentation.enabled:
        # XLA fuses the coordinate arithmetic of the whole batch into a few loops: ~4x faster on a CPU.
        augment = tf.function(lambda images: augment_batch(images, augmentation), jit_compile=True)
        dataset = dataset.map(lambda images, label: (augment(images), label), num_parallel_calls=AUTOTUNE)
    else:
        dataset = dataset.map(lambda images, label: (tf.cast(images, tf.float32), label),
                              num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
