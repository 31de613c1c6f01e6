"""The tf.data input pipeline: cached files or streamed shards -> decode -> resize -> batch -> augment -> prefetch.

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
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from services.trainer.shards import FEATURES
from shared.model_input import decode_tensor, resize_for_model
from shared.training import AugmentationConfig

AUTOTUNE = tf.data.AUTOTUNE
SHARD_FEATURES = {name: FEATURES[name] for name in ("image", "label")}  # what training reads of a record


def decode_resize(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """One file -> uint8 RGB of image_size (uint8 until augmentation: a quarter of the bytes to move)."""
    return decode_resize_bytes(tf.io.read_file(path), image_size)


def decode_resize_bytes(data: tf.Tensor, image_size: int) -> tf.Tensor:
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
    return _batch_augment(dataset, batch_size, augmentation)


def build_shard_dataset(
    shard_keys: Sequence[str],
    fetch: Callable[[str], str],
    image_size: int,
    batch_size: int,
    augmentation: AugmentationConfig | None = None,
    shuffle: bool = False,
    seed: int = 0,
    parallel_fetches: int = 4,
    cycle_length: int = 4,
    shuffle_buffer: int = 2048,
) -> tf.data.Dataset:
    """The same batches as :func:`build_dataset`, from TFRecord shards.

    ``fetch`` makes a shard a local file (``ImageCache.fetch``: downloaded once, then read from disk, bounded by
    the cache's LRU); ``parallel_fetches`` shards download at once ahead of the reader, so the first batch comes
    after one shard, not the whole set. ``TFRecordDataset`` reads local files in C++ (no GIL, no Python per
    record), and for training ``interleave`` reads ``cycle_length`` shards at once, then a shuffle buffer mixes
    records (memory: about ``shuffle_buffer`` encoded images). Without shuffling the records come in index order
    (``shards.shard_order``), one shard after another.
    """
    keys = tf.data.Dataset.from_tensor_slices(list(shard_keys))
    if shuffle:
        keys = keys.shuffle(len(shard_keys), seed=seed, reshuffle_each_iteration=True)

    def fetch_path(key: tf.Tensor) -> tf.Tensor:
        path = tf.py_function(lambda k: fetch(k.numpy().decode()), [key], tf.string)
        path.set_shape(())
        return path

    files = keys.map(fetch_path, num_parallel_calls=parallel_fetches, deterministic=True)
    if shuffle:
        records = files.interleave(tf.data.TFRecordDataset, cycle_length=cycle_length, num_parallel_calls=AUTOTUNE,
                                   deterministic=False)
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    else:
        records = files.interleave(tf.data.TFRecordDataset, cycle_length=1)

    def decode(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        record = tf.io.parse_single_example(serialized, SHARD_FEATURES)
        return decode_resize_bytes(record["image"], image_size), tf.cast(record["label"], tf.int32)

    dataset = records.map(decode, num_parallel_calls=AUTOTUNE, deterministic=not shuffle)
    return _batch_augment(dataset, batch_size, augmentation)


def _batch_augment(dataset: tf.data.Dataset, batch_size: int,
                   augmentation: AugmentationConfig | None) -> tf.data.Dataset:
    dataset = dataset.batch(batch_size, num_parallel_calls=AUTOTUNE)
    if augmentation is not None and augmentation.enabled:
        # XLA fuses the coordinate arithmetic of the whole batch into a few loops: ~4x faster on a CPU.
        augment = tf.function(lambda images: augment_batch(images, augmentation), jit_compile=True)
        dataset = dataset.map(lambda images, label: (augment(images), label), num_parallel_calls=AUTOTUNE)
    else:
        dataset = dataset.map(lambda images, label: (tf.cast(images, tf.float32), label),
                              num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
