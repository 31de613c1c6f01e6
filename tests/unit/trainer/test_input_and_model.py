"""The tf.data pipeline and the model builder (TensorFlow, CPU, tiny inputs)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from services.trainer.input import augment_batch, build_dataset
from services.trainer.model import BACKBONE_LAYER, LOGITS_LAYER, build_model, compile_model, unfreeze_for_fine_tuning
from shared.openset import EMBEDDING_LAYER, embedding_model, softmax
from shared.training import AugmentationConfig, TrainingJobSpec

pytestmark = [pytest.mark.unit, pytest.mark.ml]

OFF = AugmentationConfig(rotation=0, flip_horizontal=False, flip_vertical=False, zoom=0, brightness=0, contrast=0)


def gradient_images(batch: int = 4, size: int = 16) -> tf.Tensor:
    ramp = np.tile(np.linspace(0, 255, size, dtype="float32"), (size, 1))
    return tf.constant(np.stack([np.stack([ramp, ramp.T, 255 - ramp], axis=-1)] * batch))


def test_augmentation_off_is_the_identity() -> None:
    images = gradient_images()
    assert not OFF.enabled
    np.testing.assert_allclose(augment_batch(images, OFF).numpy(), images.numpy())


def test_horizontal_flip_only_gives_the_image_or_its_mirror() -> None:
    images = gradient_images(batch=32)
    flipped = augment_batch(images, OFF.model_copy(update={"flip_horizontal": True})).numpy()
    mirror = images.numpy()[:, :, ::-1, :]
    same = [np.allclose(out, img, atol=1e-3) for out, img in zip(flipped, images.numpy(), strict=True)]
    mirrored = [np.allclose(out, mir, atol=1e-3) for out, mir in zip(flipped, mirror, strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert any(same) and any(mirrored)  # 32 coin flips


def test_full_augmentation_keeps_shape_and_range_and_changes_pixels() -> None:
    images = gradient_images(batch=8)
    config = AugmentationConfig(rotation=180, flip_vertical=True, zoom=0.2, brightness=0.3, contrast=0.3)
    out = augment_batch(images, config).numpy()
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, images.numpy())


def test_the_pipeline_decodes_resizes_and_batches_files(tmp_path: Path) -> None:
    paths = []
    for index in range(5):
        path = tmp_path / f"{index}.jpg"
        Image.new("RGB", (40, 30), (index * 40, 100, 200)).save(path)
        paths.append(str(path))
    batches = list(build_dataset(paths, [0, 1, 0, 1, 0], image_size=24, batch_size=2))
    assert [images.shape[0] for images, _ in batches] == [2, 2, 1]
    images, labels = batches[0]
    assert images.shape[1:] == (24, 24, 3) and images.dtype == tf.float32 and labels.numpy().tolist() == [0, 1]
    assert images.numpy()[1, 12, 12, 0] == pytest.approx(40, abs=3)  # the second file's red channel, in [0, 255]


def spec(backbone: str, size: int = 32, weights: str = "none") -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({"data": {"dataset": "d", "image_size": size},
                                           "backbone": {"name": backbone, "weights": weights},
                                           "head": {"dense_units": 8}})


def test_models_take_0_255_rgb_and_output_class_logits() -> None:
    import keras

    keras.utils.set_random_seed(0)  # the assertions below read values of a freshly initialised model
    model = build_model(spec("tiny_cnn"), 5)
    logits = model.predict(np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32"), verbose=0)
    assert logits.shape == (3, 5)
    assert model.get_layer(LOGITS_LAYER).get_config()["activation"] == "linear"
    # not probabilities: no softmax inside the model
    assert (logits < 0).any() or not np.allclose(logits.sum(axis=1), 1.0, atol=1e-3)
    assert model.get_layer(BACKBONE_LAYER).trainable  # no pretrained weights: trains from the start


def test_the_loss_reads_logits_and_training_lowers_it() -> None:
    model = build_model(spec("tiny_cnn"), 2)
    compile_model(model, spec("tiny_cnn").optimizer.name, 3e-3, jit_compile=False)
    rng = np.random.default_rng(2)
    images = np.concatenate([rng.uniform(0, 60, (16, 32, 32, 3)), rng.uniform(190, 255, (16, 32, 32, 3))])
    labels = np.repeat([0, 1], 16)
    history = model.fit(images.astype("float32"), labels, epochs=8, batch_size=8, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert history["accuracy"][-1] >= 0.9  # accuracy works on logits (argmax)


def test_weight_decay_shrinks_kernels_but_not_biases_or_batchnorm() -> None:
    """Zero gradients: Adam's own step is 0, so whatever moves is the decoupled decay alone."""
    model = build_model(spec("tiny_cnn"), 3)
    compile_model(model, spec("tiny_cnn").optimizer.name, 0.1, jit_compile=False, weight_decay=0.5)
    for variable in model.trainable_variables:  # non-zero everywhere, so a decay would show
        variable.assign(np.full(variable.shape, 2.0, dtype="float32"))
    before = {variable.path: variable.numpy().copy() for variable in model.trainable_variables}
    model.optimizer.apply_gradients([(np.zeros(v.shape, "float32"), v) for v in model.trainable_variables])
    ranks = {len(variable.shape) for variable in model.trainable_variables}
    assert ranks >= {1, 2, 4}  # biases and BatchNorm scales, the dense kernels, the conv kernels
    for variable in model.trainable_variables:
        after = variable.numpy()
        if len(variable.shape) <= 1:
            np.testing.assert_array_equal(after, before[variable.path], err_msg=variable.path)
        else:  # AdamW: w -= lr * decay * w
            np.testing.assert_allclose(after, before[variable.path] * (1 - 0.1 * 0.5), rtol=1e-5,
                                       err_msg=variable.path)


def test_the_embedding_model_returns_pool_features_and_the_same_logits() -> None:
    model = build_model(spec("tiny_cnn"), 4)
    batch = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    features, logits = embedding_model(model).predict(batch, verbose=0)
    assert features.shape == (2, model.get_layer(EMBEDDING_LAYER).output.shape[-1]) == (2, 64)
    np.testing.assert_allclose(logits, model.predict(batch, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(softmax(logits).sum(axis=1), 1.0)


def test_caffe_backbones_get_bgr_mean_subtraction_inside_the_model() -> None:
    model = build_model(spec("vgg16"), 3)
    layer = model.get_layer("caffe_preprocessing")
    assert not layer.trainable
    out = layer(np.array([[[[10.0, 20.0, 30.0]]]], dtype="float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out)[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68],
                               rtol=1e-5)


def test_fine_tuning_unfreezes_the_last_layers_but_never_batchnorm() -> None:
    model = build_model(spec("mobilenet_v3"), 3)
    backbone = model.get_layer(BACKBONE_LAYER)
    backbone.trainable = False  # as after loading ImageNet weights
    assert unfreeze_for_fine_tuning(model, 10) == 10
    counted = [layer for layer in backbone.layers
               if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)]
    assert all(layer.trainable for layer in counted[-10:])  # BatchNorm is not counted: 10 means 10
    assert not any(layer.trainable for layer in counted[:-10])
    assert not any(layer.trainable for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization))


@pytest.mark.parametrize("backbone", ["efficientnet_b0", "resnet50", "inception_v3", "mobilenet_v3"])
def test_application_backbones_build_at_their_smallest_size(backbone: str) -> None:
    size = 75 if backbone == "inception_v3" else 32
    model = build_model(spec(backbone, size), 4)
    assert model.input_shape == (None, size, size, 3) and model.output_shape == (None, 4)


def test_a_saved_model_with_caffe_preprocessing_loads_with_plain_keras(tmp_path: Path) -> None:
    model = build_model(spec("vgg16"), 3)
    batch = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), rtol=1e-4,
                               atol=1e-6)


def test_mixed_precision_keeps_float32_logits() -> None:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model(spec("tiny_cnn"), 3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer(LOGITS_LAYER).dtype_policy.compute_dtype == "float32"
    assert model.get_layer(BACKBONE_LAYER).layers[2].dtype_policy.compute_dtype == "float16"
    assert model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).dtype == np.float32
