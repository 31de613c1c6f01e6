"""RandAugment: each operation against PIL's (the reference torchvision's uint8 RandAugment calls), the
per-image picks, the seeds, and the XLA-compiled batch function the tf.data pipeline runs."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from services.trainer.augment import augment_batch
from services.trainer.randaugment import OPERATIONS, apply_picks, posterize_bits, rand_augment, strength
from shared.training import AugmentationConfig

pytestmark = [pytest.mark.unit, pytest.mark.ml]

OFF = AugmentationConfig(rotation=0, flip_horizontal=False, flip_vertical=False, zoom=0, brightness=0, contrast=0)


def photos(batch: int = 3, size: int = 24, seed: int = 0) -> np.ndarray:
    """Smooth colour fields with noise: every value range and a histogram worth equalizing."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(30, 200, size)
    base = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size))], -1)
    return np.clip(base[None] * rng.uniform(0.5, 1.1, (batch, 1, 1, 3)) + rng.normal(0, 12, (batch, size, size, 3)),
                   0, 255).round().astype("uint8")


def picked(images: np.ndarray, name: str, magnitude: float = 9, sign: float = 1.0) -> np.ndarray:
    config = OFF.model_copy(update={"randaugment_ops": 1, "randaugment_magnitude": magnitude})
    batch = len(images)
    choice = tf.fill([batch], OPERATIONS.index(name))
    return apply_picks(tf.constant(images, tf.float32), choice, tf.fill([batch], sign), config).numpy()


def pil_each(images: np.ndarray, operation) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.stack([np.asarray(operation(Image.fromarray(image))) for image in images]).astype("float32")


def test_equalize_is_pils() -> None:
    images = photos()
    np.testing.assert_array_equal(picked(images, "equalize"), pil_each(images, ImageOps.equalize))


def test_autocontrast_is_pils() -> None:
    images = photos()
    np.testing.assert_allclose(picked(images, "autocontrast"), pil_each(images, ImageOps.autocontrast), atol=1.0)


@pytest.mark.parametrize("name, enhancer", [("brightness", ImageEnhance.Brightness), ("color", ImageEnhance.Color),
                                            ("contrast", ImageEnhance.Contrast),
                                            ("sharpness", ImageEnhance.Sharpness)])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_enhancements_are_pils_at_one_plus_or_minus_the_magnitudes_factor(name: str, enhancer, sign: float) -> None:  # type: ignore[no-untyped-def]
    images = photos()
    config = OFF.model_copy(update={"randaugment_magnitude": 9})
    factor = 1 + sign * 0.9 * strength(config)
    expected = pil_each(images, lambda image: enhancer(image).enhance(factor))
    # PIL rounds to uint8 (and its Contrast uses a rounded mean): within 2 levels of 255
    np.testing.assert_allclose(picked(images, name, sign=sign), expected, atol=2.0)


def test_posterize_and_solarize_are_pils_at_torchvisions_magnitudes() -> None:
    images = photos()
    for magnitude, bits in ((0, 8), (9, 7), (30, 4)):
        assert posterize_bits(OFF.model_copy(update={"randaugment_magnitude": magnitude})) == bits
    np.testing.assert_array_equal(picked(images, "posterize", magnitude=30),
                                  pil_each(images, lambda image: ImageOps.posterize(image, 4)))
    threshold = 255 * (1 - 15 / 30)
    np.testing.assert_array_equal(picked(images, "solarize", magnitude=15),
                                  pil_each(images, lambda image: ImageOps.solarize(image, threshold)))


def test_identity_and_magnitude_zero_geometry_leave_the_image_alone() -> None:
    images = photos()
    for name in ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness"):
        magnitude = 9 if name == "identity" else 0
        np.testing.assert_allclose(picked(images, name, magnitude=magnitude), images, atol=1e-3, err_msg=name)


def test_translate_moves_the_picture_by_the_magnitudes_share_of_the_side() -> None:
    image = np.zeros((1, 30, 30, 3), "uint8")
    image[0, 10:20, 10:20] = 255  # a white square in the middle
    config = OFF.model_copy(update={"randaugment_magnitude": 10})
    shift = round(150 / 331 * strength(config) * 30)  # 4.5 -> about 5 pixels
    moved = picked(image, "translate_x", magnitude=10)[0, 15, :, 0]
    columns = np.flatnonzero(moved > 127)
    assert abs(columns.min() - (10 + shift)) <= 1 and abs(columns.max() - (19 + shift)) <= 1
    assert columns.size == 10


def test_each_image_gets_its_own_picks_and_the_seed_decides_them() -> None:
    image = photos(batch=1)[0]
    batch = tf.constant(np.stack([image] * 16), tf.float32)
    config = OFF.model_copy(update={"randaugment_ops": 2, "randaugment_magnitude": 12})
    seed = tf.constant([3, 4], tf.int64)
    out = rand_augment(batch, config, seed).numpy()
    assert out.shape == batch.shape and out.min() >= 0 and out.max() <= 255
    distinct = {out[i].round().tobytes() for i in range(16)}
    assert len(distinct) >= 8  # 14 x 14 pairs of picks over 16 copies of one photo
    np.testing.assert_array_equal(rand_augment(batch, config, seed).numpy(), out)
    assert not np.allclose(rand_augment(batch, config, tf.constant([5, 6], tf.int64)).numpy(), out)


@pytest.mark.parametrize("name", OPERATIONS)
def test_each_operation_compiles_with_xla_to_the_same_result(name: str) -> None:
    """The pipeline runs the augmentations under ``jit_compile=True``. (The whole ``rand_augment`` is not
    compared: XLA may pick another stateless random algorithm, so other picks.)"""
    images = tf.constant(photos(batch=4), tf.float32)
    config = OFF.model_copy(update={"randaugment_ops": 1, "randaugment_magnitude": 13})
    choice, sign = tf.fill([4], OPERATIONS.index(name)), tf.constant([1.0, -1.0, 1.0, -1.0])
    compiled = tf.function(lambda batch: apply_picks(batch, choice, sign, config), jit_compile=True)
    np.testing.assert_allclose(compiled(images).numpy(), apply_picks(images, choice, sign, config).numpy(),
                               atol=0.05)


def test_the_pipelines_compiled_batch_function_runs_it_and_off_changes_nothing() -> None:
    images = tf.constant(photos(batch=4), tf.float32)
    config = OFF.model_copy(update={"randaugment_ops": 2})
    assert config.enabled and not OFF.enabled
    compiled = tf.function(lambda batch, seed: augment_batch(batch, config, seed), jit_compile=True)
    out = compiled(images, tf.constant([1, 2], tf.int64)).numpy()
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, images.numpy())
    np.testing.assert_array_equal(compiled(images, tf.constant([1, 2], tf.int64)).numpy(), out)
    np.testing.assert_allclose(augment_batch(images, OFF, tf.constant([1, 2], tf.int64)).numpy(), images.numpy())
