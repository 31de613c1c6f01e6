"""Training augmentations of whole batches, every random draw from an explicit seed (``tf.random.stateless_*``).

Geometry: random resized crop, rotation (any angle), zoom and flips are folded into one affine map per image and
the batch is resampled once by batched ``tf.gather`` (bilinear: four gathers), with the outside of the photo
filled by reflection. One resampling instead of one per transform keeps the image sharp and, on a CPU, costs
about a quarter of ``ImageProjectiveTransformV3`` (Keras' RandomRotation); ImageDataGenerator rotated image by
image in Python, which is what doubled the old epoch time. Then RandAugment (:mod:`services.trainer.randaugment`),
then colour (brightness, contrast, saturation, hue), then random erasing. MixUp and CutMix mix labels too, so
they run after the labels are one-hot (:func:`mix_batch`).

Stateless draws: the same seed gives the same batch whatever thread runs the map, which makes
``spec.deterministic`` possible; the seeds come from ``tf.data.Dataset.random`` so every epoch draws anew.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from services.trainer.randaugment import rand_augment
from services.trainer.sampling import centred_grid, resample, seeds, uniform
from shared.training import AugmentationConfig

# Random erasing's rectangle (Zhong et al. 2020, the paper's defaults): 2-33% of the area, aspect 0.3-3.3.
ERASE_AREA = (0.02, 1 / 3)
ERASE_ASPECT = (0.3, 1 / 0.3)

# RGB <-> YIQ: a hue rotation is a rotation of the chroma plane (I, Q) about the luma axis Y.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
                       dtype="float32")
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype("float32")


def crop_scales(seed: tf.Tensor, batch: tf.Tensor, config: AugmentationConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """Width and height of each image's random crop as fractions of the image: area uniform in ``crop_area``,
    aspect log-uniform in ``crop_aspect_ratio`` and then bent where needed so the crop fits the image; the area
    is always the one drawn (Model Garden retries a draw instead, and falls back to a centre crop)."""
    area_seed, aspect_seed = tf.unstack(seeds(seed, 2))
    low, high = config.crop_area
    area = uniform(area_seed, [batch, 1], low, high) if low < high else tf.fill([batch, 1], low)
    log_low, log_high = (math.log(r) for r in config.crop_aspect_ratio)
    aspect = tf.exp(uniform(aspect_seed, [batch, 1], log_low, log_high)) if log_low < log_high else \
        tf.fill([batch, 1], math.exp(log_low))
    width = tf.clip_by_value(tf.sqrt(area * aspect), area, 1.0)  # width >= area keeps the height <= 1
    return width, area / width


def geometric_augment(images: tf.Tensor, config: AugmentationConfig, seed: tf.Tensor) -> tf.Tensor:
    """Random resized crop, rotation, zoom and flips of a batch (B, H, W, C) with static H and W; float32 out."""
    height, width = int(images.shape[1]), int(images.shape[2])
    batch = tf.shape(images)[0]
    crop_seed, shift_seed, angle_seed, zoom_seed, flip_seed = tf.unstack(seeds(seed, 5))
    grid_x, grid_y = centred_grid(height, width)
    ones = tf.ones([batch, 1])
    scale_x, scale_y = crop_scales(crop_seed, batch, config) if config.random_crop else (ones, ones)
    # The crop's centre: anywhere that keeps an unrotated crop inside the photo.
    shift = uniform(shift_seed, [2, batch, 1], -0.5, 0.5)
    centre_x = shift[0] * (1.0 - scale_x) * width + (width - 1) / 2
    centre_y = shift[1] * (1.0 - scale_y) * height + (height - 1) / 2
    angle = uniform(angle_seed, [batch, 1], -1.0, 1.0) * (config.rotation * math.pi / 180.0)
    zoom = 1.0 + uniform(zoom_seed, [batch, 1], -config.zoom, config.zoom) if config.zoom else ones
    flips = tf.where(uniform(flip_seed, [2, batch, 1], 0.0, 1.0) < 0.5, -1.0, 1.0)
    flip_x = flips[0] if config.flip_horizontal else ones
    flip_y = flips[1] if config.flip_vertical else ones
    # Output pixel p samples input pixel centre + R(angle) F S (p - c): S the crop's scale over the zoom.
    ax, ay = flip_x * scale_x / zoom, flip_y * scale_y / zoom
    cos, sin = tf.cos(angle), tf.sin(angle)
    source_x = cos * ax * grid_x - sin * ay * grid_y + centre_x
    source_y = sin * ax * grid_x + cos * ay * grid_y + centre_y
    return tf.cast(resample(images, source_x, source_y, config), tf.float32)


def colour_augment(images: tf.Tensor, config: AugmentationConfig, seed: tf.Tensor) -> tf.Tensor:
    """Brightness, contrast, saturation and hue of float32 [0, 255] images, each image its own draw."""
    batch = tf.shape(images)[0]
    brightness_seed, contrast_seed, saturation_seed, hue_seed = tf.unstack(seeds(seed, 4))
    if config.brightness:
        images = images + uniform(brightness_seed, [batch, 1, 1, 1], -config.brightness, config.brightness) * 255.0
    if config.contrast:
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        images = (images - mean) * (1.0 + uniform(contrast_seed, [batch, 1, 1, 1], -config.contrast,
                                                   config.contrast)) + mean
    if config.saturation:
        grey = tf.reduce_sum(images * tf.constant(_RGB_TO_YIQ[0]), axis=-1, keepdims=True)
        images = (images - grey) * (1.0 + uniform(saturation_seed, [batch, 1, 1, 1], -config.saturation,
                                                   config.saturation)) + grey
    if config.hue:
        angle = uniform(hue_seed, [batch], -config.hue, config.hue) * (2 * math.pi)
        cos, sin, zero, one = tf.cos(angle), tf.sin(angle), tf.zeros_like(angle), tf.ones_like(angle)
        rotation = tf.reshape(tf.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], axis=1), [-1, 3, 3])
        # rgb' = YIQ^-1 R YIQ rgb, per image; applied to row vectors as rgb @ M^T.
        matrix = tf.constant(_YIQ_TO_RGB) @ rotation @ tf.constant(_RGB_TO_YIQ)
        images = tf.einsum("bhwc,bdc->bhwd", images, matrix)
    return tf.clip_by_value(images, 0.0, 255.0)


def random_erase(images: tf.Tensor, probability: float, seed: tf.Tensor) -> tf.Tensor:
    """With ``probability`` per image, one rectangle (ERASE_AREA, ERASE_ASPECT) becomes uniform noise."""
    height, width = int(images.shape[1]), int(images.shape[2])
    batch = tf.shape(images)[0]
    which_seed, area_seed, aspect_seed, place_seed, noise_seed = tf.unstack(seeds(seed, 5))
    area = uniform(area_seed, [batch, 1, 1], *ERASE_AREA)
    aspect = tf.exp(uniform(aspect_seed, [batch, 1, 1], math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1])))
    box_w = tf.minimum(tf.sqrt(area * aspect), 1.0) * width
    box_h = tf.minimum(tf.sqrt(area / aspect), 1.0) * height
    place = uniform(place_seed, [2, batch, 1, 1], 0.0, 1.0)
    left, top = place[0] * (width - box_w), place[1] * (height - box_h)
    xs = tf.range(width, dtype=tf.float32)[None, None, :]
    ys = tf.range(height, dtype=tf.float32)[None, :, None]
    inside = (xs >= left) & (xs < left + box_w) & (ys >= top) & (ys < top + box_h)
    erase = uniform(which_seed, [batch, 1, 1], 0.0, 1.0) < probability
    mask = tf.cast(inside & erase, images.dtype)[..., None]
    noise = uniform(noise_seed, tf.shape(images), 0.0, 255.0)
    return images * (1 - mask) + noise * mask


def augment_batch(images: tf.Tensor, config: AugmentationConfig, seed: tf.Tensor | None = None) -> tf.Tensor:
    """All per-image augmentations of ``config``; any dtype in, float32 [0, 255] out. ``seed``: shape (2,)."""
    seed = tf.zeros([2], tf.int64) if seed is None else seed
    geometry_seed, colour_seed, erase_seed = tf.unstack(seeds(seed, 3))
    images = geometric_augment(images, config, geometry_seed) if config.geometric else tf.cast(images, tf.float32)
    if config.randaugment_ops:
        # Its own stream, so turning it on leaves the draws of the other augmentations as they were.
        images = rand_augment(images, config, seeds(seed + 1, 1)[0])
    if config.photometric:
        images = colour_augment(images, config, colour_seed)
    if config.random_erasing:
        images = random_erase(images, config.random_erasing, erase_seed)
    return images


def _beta(seed: tf.Tensor, alpha: float) -> tf.Tensor:
    """One draw of Beta(alpha, alpha) as X / (X + Y) with X, Y ~ Gamma(alpha)."""
    gammas = tf.random.stateless_gamma([2], seed, alpha=alpha)
    return gammas[0] / (gammas[0] + gammas[1])


def mix_batch(images: tf.Tensor, labels: tf.Tensor, config: AugmentationConfig,
              seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """MixUp or CutMix of a batch with its own reversal; ``labels`` one-hot or soft (B, classes), float32.

    One lambda per batch (as both papers do); with both on, each batch takes one of them at even odds (timm's
    switch). The mixed labels are lam * y + (1 - lam) * y_partner, so each row still sums to 1; CutMix's lam
    is the box's exact share of pixels."""
    choice_seed, mixup_seed, cutmix_seed, box_seed = tf.unstack(seeds(seed, 4))
    partner_images, partner_labels = tf.reverse(images, [0]), tf.reverse(labels, [0])

    def mixup() -> tuple[tf.Tensor, tf.Tensor]:
        lam = _beta(mixup_seed, config.mixup_alpha)
        return lam * images + (1 - lam) * partner_images, lam * labels + (1 - lam) * partner_labels

    def cutmix() -> tuple[tf.Tensor, tf.Tensor]:
        height, width = int(images.shape[1]), int(images.shape[2])
        lam = _beta(cutmix_seed, config.cutmix_alpha)
        cut = tf.sqrt(1.0 - lam)
        centre = uniform(box_seed, [2], 0.0, 1.0)
        x0 = tf.clip_by_value(tf.round((centre[0] - cut / 2) * width), 0, width)
        x1 = tf.clip_by_value(tf.round((centre[0] + cut / 2) * width), 0, width)
        y0 = tf.clip_by_value(tf.round((centre[1] - cut / 2) * height), 0, height)
        y1 = tf.clip_by_value(tf.round((centre[1] + cut / 2) * height), 0, height)
        xs = tf.range(width, dtype=tf.float32)[None, :]
        ys = tf.range(height, dtype=tf.float32)[:, None]
        box = tf.cast((xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1), tf.float32)
        kept = 1.0 - tf.reduce_mean(box)  # the share of this image's own pixels
        mixed = images * (1 - box[None, :, :, None]) + partner_images * box[None, :, :, None]
        return mixed, kept * labels + (1 - kept) * partner_labels

    if config.mixup_alpha and config.cutmix_alpha:
        return tf.cond(uniform(choice_seed, [], 0.0, 1.0) < 0.5, mixup, cutmix)
    return mixup() if config.mixup_alpha else cutmix()


def centre_crop(images: tf.Tensor, fraction: float) -> tf.Tensor:
    """The central ``fraction`` of each side of (B, H, W, C) float images, resized back to (H, W) bilinearly
    (the evaluation view of Model Garden's classification input, CENTER_CROP_FRACTION = 0.875)."""
    if fraction >= 1.0:
        return images
    height, width = int(images.shape[1]), int(images.shape[2])
    margin = (1.0 - fraction) / 2
    batch = tf.shape(images)[0]
    boxes = tf.tile(tf.constant([[margin, margin, 1.0 - margin, 1.0 - margin]], tf.float32), [batch, 1])
    return tf.image.crop_and_resize(images, boxes, tf.range(batch), (height, width), method="bilinear")
