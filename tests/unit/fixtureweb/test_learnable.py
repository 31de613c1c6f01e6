"""A tiny CNN learns the synthetic species, and 50 classes are harder than 10."""

from __future__ import annotations

import numpy as np
import pytest

from fixtureweb.species import SpeciesCatalog

pytestmark = pytest.mark.ml
SIZE = 32


def dataset(n_classes: int, per_class: int, first_seed: int) -> tuple[np.ndarray, np.ndarray]:
    catalog = SpeciesCatalog(n_classes, seed=0)
    images, labels = [], []
    for c in range(n_classes):
        for k in range(per_class):
            images.append(np.asarray(catalog.render(c, first_seed + k, SIZE), dtype=np.uint8))
            labels.append(c)
    return np.stack(images), np.asarray(labels)


def held_out_accuracy(n_classes: int, train_per_class: int, test_per_class: int, epochs: int) -> float:
    import keras

    keras.utils.set_random_seed(0)
    x_train, y_train = dataset(n_classes, train_per_class, first_seed=0)
    x_test, y_test = dataset(n_classes, test_per_class, first_seed=10_000)  # unseen photos
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu", padding="same"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return float(accuracy)


def test_tiny_cnn_learns_species_and_more_classes_are_harder():
    # The same number of training images (600) and steps for both: only the number of classes differs.
    acc10 = held_out_accuracy(10, train_per_class=60, test_per_class=10, epochs=12)
    acc50 = held_out_accuracy(50, train_per_class=12, test_per_class=4, epochs=12)
    print(f"held-out accuracy: 10 classes {acc10:.2f}, 50 classes {acc50:.2f}")
    assert acc10 > 3 * (1 / 10)
    assert acc50 < acc10
    assert acc50 > 1 / 50  # still learns something
