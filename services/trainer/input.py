"""The tf.data input pipeline: cached files -> decode -> resize -> batch -> augment -> prefetch.

Augmentation runs on whole batches: rotation (any angle), zoom and flips are folded into one projective
transform per image and applied to the batch by a single ``ImageProjectiveTransformV3`` op, so rotating by up
to 180 degrees costs about as much as not rotating (ImageDataGenerator rotated image by image in Python,
which is what doubled the old epoch time). Output images are float32 RGB in [0, 255], the model's input
contract (shared/registry.py); normalisation lives inside the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf

from shared.training import AugmentationConfig

AUTOTUNE = tf.data.AUTOTUNE


def decode_resize(path: tf.Tensor, image_size: int) -> tf.Tensor:
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image = tf.image.resize(image, (image_size, image_size), method="bilinear")
    image.set_shape((image_size, image_size, 3))
    return image


def augment_batch(images: tf.Tensor, config: AugmentationConfig) -> tf.Tensor:
    """Random rotation/zoom/flip (one projective transform per image) and brightness/contrast, batched."""
    shape = tf.shape(images)
    batch = shape[0]
    height = tf.cast(shape[1], tf.float32)
    width = tf.cast(shape[2], tf.float32)
    if config.rotation or config.zoom or config.flip_horizontal or config.flip_vertical:
        angle = tf.random.uniform([batch], -1.0, 1.0) * (config.rotation * math.pi / 180.0)
        scale = 1.0 + tf.random.uniform([batch], -config.zoom, config.zoom) if config.zoom else tf.ones([batch])
        flip_x = _random_sign(batch) if config.flip_horizontal else tf.ones([batch])
        flip_y = _random_sign(batch) if config.flip_vertical else tf.ones([batch])
        cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
        # The transform maps output pixel (x, y) to the input pixel it samples: c + M (p - c),
        # with M = R(angle) F / scale and c the image centre.
        a0, a1 = cos * flip_x, -sin * flip_y
        b0, b1 = sin * flip_x, cos * flip_y
        cx, cy = (width - 1) / 2, (height - 1) / 2
        a2 = cx - a0 * cx - a1 * cy
        b2 = cy - b0 * cx - b1 * cy
        zeros = tf.zeros([batch])
        transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        images = tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transforms, output_shape=shape[1:3], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="REFLECT",
        )
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
    return tf.where(tf.random.uniform([batch]) < 0.5, -1.0, 1.0)


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
        dataset = dataset.map(lambda images, label: (augment_batch(images, augmentation), label),
                              num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
