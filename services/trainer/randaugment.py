"""RandAugment (Cubuk et al., NeurIPS 2020) on whole batches, with stateless draws so ``spec.deterministic`` holds.

Each of ``randaugment_ops`` layers picks, for every image on its own, one of :data:`OPERATIONS` uniformly and
applies it at the one shared ``randaugment_magnitude`` (0-30, torchvision's 31 bins; 9 is the usual choice),
signed at random where the operation has a direction. The operations and their ranges at full magnitude are
torchvision's ``RandAugment`` (``_augmentation_space``): shear 0.3, translate 150/331 of the side, rotate 30°,
brightness/colour/contrast/sharpness factor 1 ± 0.9, posterize down to 4 bits, solarize threshold down to 0,
autocontrast, equalize, identity. Geometric operations reuse the recipe's one resampling (its ``fill_mode``
and ``interpolation``; torchvision fills with black). Keras' own ``RandAugment`` layer draws from a stateful
seed generator, which a parallel ``tf.data`` map cannot make reproducible, hence this one.

Every operation is computed for the whole batch and each image keeps its own pick (``tf.where``): simple to
compile (XLA fuses it), at the price of computing all of them.
"""

from __future__ import annotations

import math

import tensorflow as tf

from services.trainer.sampling import centred_grid, resample, seeds, uniform
from shared.training import AugmentationConfig

OPERATIONS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color",
              "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize")
MAGNITUDE_BINS = 31
MAX_SHEAR = 0.3
MAX_TRANSLATE = 150.0 / 331.0
MAX_ROTATE_DEGREES = 30.0
MAX_FACTOR_CHANGE = 0.9
_LUMA = (0.299, 0.587, 0.114)


def _op(name: str) -> int:
    return OPERATIONS.index(name)


def strength(config: AugmentationConfig) -> float:
    """The magnitude as a fraction of the full range (torchvision: linspace over 31 bins)."""
    return config.randaugment_magnitude / (MAGNITUDE_BINS - 1)


def posterize_bits(config: AugmentationConfig) -> int:
    """Bits kept by posterize: 8 at magnitude 0, 4 at 30 (torchvision's ``8 - round(bin / 7.5)``)."""
    return 8 - round(config.randaugment_magnitude / ((MAGNITUDE_BINS - 1) / 4))


def _geometry(images: tf.Tensor, choice: tf.Tensor, sign: tf.Tensor, config: AugmentationConfig) -> tf.Tensor:
    """Shear, translate or rotate the images whose pick is one of those; the others map onto themselves."""
    height, width = int(images.shape[1]), int(images.shape[2])
    amount = sign * strength(config)

    def when(name: str, value: tf.Tensor) -> tf.Tensor:
        return tf.where(choice == _op(name), value, 0.0)[:, None]

    shear_x, shear_y = when("shear_x", amount * MAX_SHEAR), when("shear_y", amount * MAX_SHEAR)
    shift_x = when("translate_x", amount * MAX_TRANSLATE * width)
    shift_y = when("translate_y", amount * MAX_TRANSLATE * height)
    angle = when("rotate", amount * MAX_ROTATE_DEGREES * math.pi / 180.0)
    grid_x, grid_y = centred_grid(height, width)
    sheared_x, sheared_y = grid_x + shear_x * grid_y, grid_y + shear_y * grid_x
    cos, sin = tf.cos(angle), tf.sin(angle)
    source_x = cos * sheared_x - sin * sheared_y + (width - 1) / 2 - shift_x
    source_y = sin * sheared_x + cos * sheared_y + (height - 1) / 2 - shift_y
    return resample(images, source_x, source_y, config)


def _luma(images: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(images * tf.constant(_LUMA), axis=-1, keepdims=True)


def _blend(degenerate: tf.Tensor, images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """PIL ImageEnhance: factor 0 gives the degenerate image, 1 the original, above 1 more than the original."""
    return degenerate + factor[:, None, None, None] * (images - degenerate)


def _smoothed(images: tf.Tensor) -> tf.Tensor:
    """PIL's SMOOTH filter (3x3, centre weight 5 of 13) inside, the border pixels as they were (as PIL does)."""
    channels = int(images.shape[-1])
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    inner = tf.nn.depthwise_conv2d(images, kernel, strides=[1, 1, 1, 1], padding="VALID")
    padded = tf.pad(inner, [[0, 0], [1, 1], [1, 1], [0, 0]])
    border = tf.pad(tf.zeros_like(inner[:1, :, :, :1]), [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=1.0)
    return tf.where(border > 0, images, padded)


def autocontrast(images: tf.Tensor) -> tf.Tensor:
    """Each channel of each image stretched to 0-255 (a flat channel is left as it is)."""
    low = tf.reduce_min(images, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(images, axis=[1, 2], keepdims=True)
    spread = high - low
    return tf.where(spread > 0, (images - low) * 255.0 / tf.maximum(spread, 1e-6), images)


def equalize(images: tf.Tensor) -> tf.Tensor:
    """PIL's ``ImageOps.equalize`` per channel of each image: the histogram's cumulative counts as the lookup
    table, with PIL's step (the count of all but the highest occupied value, over 255)."""
    height, width, channels = (int(size) for size in images.shape[1:])
    batch = tf.shape(images)[0]
    values = tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.int32)
    planes = tf.reshape(tf.transpose(values, [0, 3, 1, 2]), [batch * channels, height * width])
    bins = planes + 256 * tf.range(batch * channels)[:, None]
    counts = tf.math.unsorted_segment_sum(tf.ones_like(bins), bins, batch * channels * 256)
    histogram = tf.reshape(counts, [batch * channels, 256])
    top = tf.reduce_max(planes, axis=1)
    step = (height * width - tf.gather(histogram, top, batch_dims=1)) // 255
    before = tf.cumsum(histogram, axis=1, exclusive=True)
    safe_step = tf.maximum(step, 1)[:, None]
    table = tf.minimum((safe_step // 2 + before) // safe_step, 255)
    table = tf.where(step[:, None] > 0, table, tf.range(256)[None, :])
    mapped = tf.gather(table, planes, batch_dims=1)
    mapped = tf.transpose(tf.reshape(mapped, [batch, channels, height, width]), [0, 2, 3, 1])
    return tf.cast(mapped, images.dtype)


def _photometric(images: tf.Tensor, choice: tf.Tensor, sign: tf.Tensor, config: AugmentationConfig) -> tf.Tensor:
    factor = 1.0 + sign * (MAX_FACTOR_CHANGE * strength(config))
    grey = _luma(images)
    shift = 2.0 ** (8 - posterize_bits(config))
    threshold = 255.0 * (1.0 - strength(config))
    candidates = {
        "brightness": _blend(tf.zeros_like(images), images, factor),
        "color": _blend(grey, images, factor),
        "contrast": _blend(tf.reduce_mean(grey, axis=[1, 2, 3], keepdims=True), images, factor),
        "sharpness": _blend(_smoothed(images), images, factor),
        "posterize": tf.floor(images / shift) * shift,
        "solarize": tf.where(images >= threshold, 255.0 - images, images),
        "autocontrast": autocontrast(images),
        "equalize": equalize(images),
    }
    for name, candidate in candidates.items():
        images = tf.where((choice == _op(name))[:, None, None, None], candidate, images)
    return images


def rand_augment(images: tf.Tensor, config: AugmentationConfig, seed: tf.Tensor) -> tf.Tensor:
    """``config.randaugment_ops`` random operations per image of a float32 [0, 255] batch; float32 out."""
    batch = tf.shape(images)[0]
    for layer_seed in tf.unstack(seeds(seed, config.randaugment_ops)):
        choice_seed, sign_seed = tf.unstack(seeds(layer_seed, 2))
        choice = tf.random.stateless_uniform([batch], choice_seed, minval=0, maxval=len(OPERATIONS),
                                             dtype=tf.int32)
        sign = tf.where(uniform(sign_seed, [batch], 0.0, 1.0) < 0.5, -1.0, 1.0)
        images = apply_picks(images, choice, sign, config)
    return images


def apply_picks(images: tf.Tensor, choice: tf.Tensor, sign: tf.Tensor, config: AugmentationConfig) -> tf.Tensor:
    """One layer: image i gets ``OPERATIONS[choice[i]]`` in direction ``sign[i]`` (+1 or -1)."""
    images = _photometric(_geometry(images, choice, sign, config), choice, sign, config)
    return tf.clip_by_value(images, 0.0, 255.0)
