"""The tf.data input pipeline: cached files or streamed shards -> decode -> resize -> batch -> augment -> prefetch.

Augmentation (``augment.py``) runs on whole batches of uint8 images, seeded per batch from
``tf.data.Dataset.random`` (a new draw every epoch, the same draws for the same seed). Output images are float32
RGB in [0, 255], the model's input contract (shared/registry.py); normalisation lives inside the model.

Order: the parallel maps leave it to the dataset's ``deterministic`` option, which is off for training (speed)
and on otherwise; :func:`finish_split` turns it on for training too when the spec asks for determinism. Then the
labels: one-hot for label smoothing and MixUp/CutMix, and the evaluation crop (also in :func:`finish_split`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from services.trainer.augment import augment_batch, centre_crop, mix_batch
from services.trainer.shards import FEATURES
from shared.model_input import decode_tensor, resize_for_model
from shared.training import AugmentationConfig, TrainingJobSpec

AUTOTUNE = tf.data.AUTOTUNE
SHARD_FEATURES = {name: FEATURES[name] for name in ("image", "label")}  # what training reads of a record


def decode_resize(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """One file -> uint8 RGB of image_size (uint8 until augmentation: a quarter of the bytes to move)."""
    return decode_resize_bytes(tf.io.read_file(path), image_size)


def decode_resize_bytes(data: tf.Tensor, image_size: int) -> tf.Tensor:
    image = tf.cast(resize_for_model(decode_tensor(data), image_size), tf.uint8)  # the path serving takes too
    image.set_shape((image_size, image_size, 3))
    return image


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
                          num_parallel_calls=AUTOTUNE)
    return _batch_augment(dataset, batch_size, augmentation, shuffle, seed)


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
        records = files.interleave(tf.data.TFRecordDataset, cycle_length=cycle_length, num_parallel_calls=AUTOTUNE)
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    else:
        records = files.interleave(tf.data.TFRecordDataset, cycle_length=1)

    def decode(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        record = tf.io.parse_single_example(serialized, SHARD_FEATURES)
        return decode_resize_bytes(record["image"], image_size), tf.cast(record["label"], tf.int32)

    dataset = records.map(decode, num_parallel_calls=AUTOTUNE)
    return _batch_augment(dataset, batch_size, augmentation, shuffle, seed)


def batch_seeds(seed: int) -> tf.data.Dataset:
    """One stateless seed (2,) per batch: the same sequence for the same seed, a new one each epoch."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)


def _in_order(dataset: tf.data.Dataset, deterministic: bool) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = deterministic
    return dataset.with_options(options)


def _batch_augment(dataset: tf.data.Dataset, batch_size: int, augmentation: AugmentationConfig | None,
                   shuffle: bool, seed: int) -> tf.data.Dataset:
    dataset = dataset.batch(batch_size, num_parallel_calls=AUTOTUNE)
    if augmentation is not None and augmentation.enabled:
        # XLA fuses the coordinate arithmetic of the whole batch into a few loops: ~4x faster on a CPU.
        augment = tf.function(lambda images, seeds: augment_batch(images, augmentation, seeds), jit_compile=True)
        dataset = tf.data.Dataset.zip(dataset, batch_seeds(seed)).map(
            lambda batch, seeds: (augment(batch[0], seeds), batch[1]), num_parallel_calls=AUTOTUNE)
    else:
        dataset = dataset.map(lambda images, label: (tf.cast(images, tf.float32), label),
                              num_parallel_calls=AUTOTUNE)
    # Unordered parallel maps are faster; only shuffled (training) data may come out of order.
    return _in_order(dataset, not shuffle).prefetch(AUTOTUNE)


def finish_split(dataset: tf.data.Dataset, spec: TrainingJobSpec, num_classes: int, training: bool,
                 soft_labels: bool) -> tf.data.Dataset:
    """What the recipe adds to an input source's batches: order, label form, MixUp/CutMix, evaluation crop.

    ``soft_labels``: labels become one-hot float32 (B, classes), as label smoothing and mixing need; every split
    then has them, because Keras evaluates validation with the training loss."""
    augmentation = spec.augmentation
    if spec.deterministic:
        dataset = _in_order(dataset, True)
    if soft_labels:
        dataset = dataset.map(lambda images, labels: (images, tf.one_hot(labels, num_classes, dtype=tf.float32)),
                              num_parallel_calls=AUTOTUNE)
    if training and augmentation.mixing:
        # A seed sequence apart from the per-image augmentations' (same spec seed, another stream).
        dataset = tf.data.Dataset.zip(dataset, batch_seeds(spec.seed + 1)).map(
            lambda batch, seeds: mix_batch(batch[0], batch[1], augmentation, seeds), num_parallel_calls=AUTOTUNE)
    if not training and augmentation.eval_crop < 1:
        dataset = dataset.map(lambda images, labels: (centre_crop(images, augmentation.eval_crop), labels),
                              num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
