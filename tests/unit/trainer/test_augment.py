"""The training augmentations (issue #20): random resized crop, bilinear rotation with reflect fill, colour,
random erasing, MixUp/CutMix and the evaluation centre crop (TensorFlow, CPU, tiny images)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from services.trainer.augment import (
    augment_batch,
    centre_crop,
    crop_scales,
    geometric_augment,
    mix_batch,
    random_erase,
)
from services.trainer.input import finish_split
from services.trainer.sampling import _reflect
from shared.training import AugmentationConfig, TrainingJobSpec

pytestmark = [pytest.mark.unit, pytest.mark.ml]

OFF = AugmentationConfig(rotation=0, flip_horizontal=False, flip_vertical=False, zoom=0, brightness=0, contrast=0)
SEED = tf.constant([3, 4], tf.int64)


def coordinate_images(batch: int, size: int) -> tf.Tensor:
    """Channel 0 = x, channel 1 = y (in pixels): a resampled image says where each output pixel came from."""
    ys, xs = np.meshgrid(np.arange(size, dtype="float32"), np.arange(size, dtype="float32"), indexing="ij")
    return tf.constant(np.stack([np.stack([xs, ys, np.zeros_like(xs)], axis=-1)] * batch))


def test_random_resized_crop_covers_the_configured_share_of_the_area() -> None:
    config = OFF.model_copy(update={"crop_area": (0.3, 0.6)})
    size = 48
    out = geometric_augment(coordinate_images(64, size), config, SEED).numpy()
    # bilinear resampling of a linear ramp is exact: the extent of x and y seen is the crop's width and height
    width = (out[..., 0].max(axis=(1, 2)) - out[..., 0].min(axis=(1, 2))) / (size - 1)
    height = (out[..., 1].max(axis=(1, 2)) - out[..., 1].min(axis=(1, 2))) / (size - 1)
    area = width * height
    assert area.min() >= 0.3 - 1e-3 and area.max() <= 0.6 + 1e-3
    assert area.max() - area.min() > 0.15  # drawn across the range, not one fixed crop
    assert (out[..., :2] >= -1e-3).all() and (out[..., :2] <= size - 1 + 1e-3).all()  # inside the photo
    assert not np.allclose(out[:, 0, 0, 0], out[0, 0, 0, 0])  # the crop's place varies too


@pytest.mark.parametrize("area", [(0.08, 1.0), (0.5, 0.5), (0.9, 1.0)])
def test_crop_scales_keep_the_drawn_area_and_fit_the_image(area: tuple[float, float]) -> None:
    config = OFF.model_copy(update={"crop_area": area, "crop_aspect_ratio": (0.5, 2.0)})
    width, height = (t.numpy().ravel() for t in crop_scales(SEED, tf.constant(500), config))
    assert (width <= 1 + 1e-6).all() and (height <= 1 + 1e-6).all()
    assert (width * height >= area[0] - 1e-6).all() and (width * height <= area[1] + 1e-6).all()


def test_crop_area_off_by_default_and_eval_crop_whole_image() -> None:
    config = AugmentationConfig()
    assert not config.random_crop and config.eval_crop == 1.0
    assert config.interpolation == "bilinear" and config.fill_mode == "reflect"


def test_reflect_mirrors_coordinates_about_the_image_edges() -> None:
    coordinates = tf.constant([-1.0, -0.5, 0.0, 3.0, 4.0, 5.0, 8.0])
    np.testing.assert_allclose(_reflect(coordinates, 4).numpy(), [0.0, -0.5, 0.0, 3.0, 3.0, 2.0, 0.0],
                               atol=1e-6)


def corner_repeats(images: np.ndarray, patch: int = 6) -> float:
    """Share of neighbouring pixel pairs in the four corner patches that are exactly equal."""
    corners = [images[:, :patch, :patch], images[:, :patch, -patch:], images[:, -patch:, :patch],
               images[:, -patch:, -patch:]]
    same = [np.mean(np.all(c[:, :, 1:] == c[:, :, :-1], axis=-1)) for c in corners]
    same += [np.mean(np.all(c[:, 1:] == c[:, :-1], axis=-1)) for c in corners]
    return float(np.mean(same))


def test_bilinear_rotation_with_reflect_fill_has_no_smeared_constant_corners() -> None:
    noise = tf.constant(np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)), tf.uint8)
    rotate = OFF.model_copy(update={"rotation": 180})
    old_way = rotate.model_copy(update={"interpolation": "nearest", "fill_mode": "nearest"})
    smeared = corner_repeats(geometric_augment(noise, old_way, SEED).numpy())
    clean = corner_repeats(geometric_augment(noise, rotate, SEED).numpy())
    assert smeared > 0.2  # edge clamping repeats one edge pixel along each ray into the corner
    assert clean < 0.02  # reflected photo content, interpolated: neighbours differ as in the photo
    assert corner_repeats(noise.numpy()) < 0.02


def test_the_same_seed_gives_the_same_batch_and_another_seed_another() -> None:
    images = coordinate_images(4, 16)
    config = AugmentationConfig(rotation=90, crop_area=(0.5, 1.0), brightness=0.2, saturation=0.2, hue=0.05,
                                random_erasing=0.5)
    first = augment_batch(images, config, SEED).numpy()
    np.testing.assert_array_equal(first, augment_batch(images, config, SEED).numpy())
    assert not np.allclose(first, augment_batch(images, config, tf.constant([3, 5], tf.int64)).numpy())


def test_hue_keeps_luma_and_saturation_keeps_grey_grey() -> None:
    rng = np.random.default_rng(1)
    colour = tf.constant(rng.uniform(100, 160, (8, 8, 8, 3)), tf.float32)  # in gamut after rotation
    hue = augment_batch(colour, OFF.model_copy(update={"hue": 0.2}), SEED).numpy()
    luma = np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(hue @ luma, colour.numpy() @ luma, atol=0.5)
    assert np.abs(hue - colour.numpy()).max() > 5
    grey = tf.constant(np.repeat(rng.uniform(0, 255, (8, 8, 8, 1)), 3, axis=-1), tf.float32)
    saturated = augment_batch(grey, OFF.model_copy(update={"saturation": 0.5}), SEED).numpy()
    np.testing.assert_allclose(saturated[..., 0], saturated[..., 1], atol=1e-3)
    np.testing.assert_allclose(saturated[..., 1], saturated[..., 2], atol=1e-3)


def test_random_erasing_replaces_one_rectangle_of_2_to_33_percent() -> None:
    images = tf.fill([32, 20, 20, 3], 128.0)
    erased = random_erase(images, 1.0, SEED).numpy()
    changed = np.any(erased != 128.0, axis=-1)
    share = changed.mean(axis=(1, 2))
    assert (share > 0).all() and share.max() <= 1 / 3 + 0.05
    rows, cols = np.any(changed, axis=2), np.any(changed, axis=1)
    # one axis-aligned rectangle: the changed pixels fill the bounding box of the changed rows and columns
    assert np.allclose(share * 400, rows.sum(axis=1) * cols.sum(axis=1), rtol=0.15)
    np.testing.assert_array_equal(random_erase(images, 0.0, SEED).numpy(), images.numpy())


def one_hot_batch(batch: int = 8, classes: int = 4) -> tuple[tf.Tensor, tf.Tensor]:
    labels = tf.one_hot(np.arange(batch) % classes, classes)
    images = tf.constant(np.arange(batch, dtype="float32")[:, None, None, None] * 10 * np.ones((1, 16, 16, 3)),
                         tf.float32)
    return images, labels


def test_mixup_blends_images_and_labels_by_the_same_lambda_and_labels_sum_to_one() -> None:
    images, labels = one_hot_batch()
    mixed, soft = mix_batch(images, labels, OFF.model_copy(update={"mixup_alpha": 0.4}), SEED)
    soft = soft.numpy()
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    own = soft[np.arange(8), np.arange(8) % 4]
    # image i is lam * 10 i + (1 - lam) * 10 (7 - i): recover lam from pixels, compare with the label weight
    value = mixed.numpy()[:, 0, 0, 0]
    partner = 10 * (7 - np.arange(8))
    lam = (value - partner) / (10 * np.arange(8) - partner)
    assert lam[0] == pytest.approx(own[0], abs=1e-5)
    assert 0 < own[0] < 1


def test_cutmix_mixes_labels_by_the_pasted_area() -> None:
    images, labels = one_hot_batch()
    mixed, soft = mix_batch(images, labels, OFF.model_copy(update={"cutmix_alpha": 1.0}),
                            tf.constant([1, 2], tf.int64))
    soft = soft.numpy()
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    pasted = (mixed.numpy()[0, ..., 0] != 0).mean()  # image 0 is all zeros; its partner (image 7) is 70
    assert soft[0, 0] == pytest.approx(1 - pasted, abs=1e-6)
    assert soft[0, 7 % 4] == pytest.approx(pasted, abs=1e-6)


def test_centre_crop_shows_the_central_fraction_resized_back() -> None:
    out = centre_crop(coordinate_images(2, 33), 0.5).numpy()
    assert out.shape == (2, 33, 33, 3)
    assert out[..., 0].min() == pytest.approx(8, abs=0.01) and out[..., 0].max() == pytest.approx(24, abs=0.01)
    np.testing.assert_array_equal(centre_crop(coordinate_images(1, 8), 1.0).numpy(), coordinate_images(1, 8))


def spec(**augmentation: object) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({"data": {"dataset": "d", "image_size": 16},
                                           "backbone": {"name": "tiny_cnn", "weights": "none"},
                                           "augmentation": augmentation})


def test_finish_split_crops_only_evaluation_and_mixes_only_training() -> None:
    images = coordinate_images(4, 17)
    dataset = tf.data.Dataset.from_tensors((images, tf.constant([0, 1, 2, 0])))
    recipe = spec(eval_crop=0.5, mixup_alpha=0.4)
    evaluation_images, evaluation_labels = next(iter(finish_split(dataset, recipe, 3, training=False,
                                                                  soft_labels=True)))
    assert evaluation_images.numpy()[..., 0].max() == pytest.approx(12, abs=0.01)  # cropped to the centre
    np.testing.assert_array_equal(evaluation_labels.numpy(), np.eye(3)[[0, 1, 2, 0]])  # one-hot, not mixed
    train_images, train_labels = next(iter(finish_split(dataset, recipe, 3, training=True, soft_labels=True)))
    assert train_images.numpy()[..., 0].max() > 15  # no evaluation crop in training
    assert not np.allclose(train_labels.numpy(), np.eye(3)[[0, 1, 2, 0]])  # mixed
    np.testing.assert_allclose(train_labels.numpy().sum(axis=1), 1.0, rtol=1e-6)
