"""Calibrate stage 1 on the fixture web's synthetic sets and print the frozen constants for stats.py.

``python -m services.curator.filter.calibrate [--per-kind N]`` (a development tool: needs ``fixtureweb``).
"""

from __future__ import annotations

import argparse
import io
import logging

import numpy as np
from PIL import Image

from services.curator.filter.logistic import fit_logistic, precision_recall
from services.curator.filter.stats import FEATURE_NAMES, image_features

logger = logging.getLogger(__name__)


def synthetic_set(seeds: range, n_classes: int = 10, irrelevant_every: int = 1) -> tuple[list[Image.Image], np.ndarray]:
    """Species photos and irrelevant images as the fixture web serves them (JPEG, its aspect ratios)."""
    from fixtureweb.content import SPECIES, ContentStore, ImageSpec
    from fixtureweb.encoding import ImageFormat
    from fixtureweb.faults import Fault
    from fixtureweb.irrelevant import IrrelevantKind
    from fixtureweb.species import SpeciesCatalog

    content = ContentStore(SpeciesCatalog(n_classes, 0), cache_bytes=0)
    images: list[Image.Image] = []
    labels: list[int] = []
    for seed in seeds:
        quality = 70 + seed % 23
        variant = Fault.GRAYSCALE if seed % 17 == 0 else None
        spec = ImageSpec(SPECIES, seed % n_classes, seed)
        images.append(Image.open(io.BytesIO(content.image_bytes(spec, ImageFormat.JPEG, 320, quality, variant))))
        labels.append(0)
        if seed % irrelevant_every == 0:
            kind = list(IrrelevantKind)[seed % len(IrrelevantKind)]
            spec = ImageSpec(kind.value, 0, seed)
            images.append(Image.open(io.BytesIO(content.image_bytes(spec, ImageFormat.JPEG, 320, quality))))
            labels.append(1)
    return images, np.asarray(labels)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=int, default=600, help="seeds to calibrate on")
    parser.add_argument("--test", type=int, default=400, help="held-out seeds")
    args = parser.parse_args(argv)
    train_images, train_labels = synthetic_set(range(args.train))
    test_images, test_labels = synthetic_set(range(1_000_000, 1_000_000 + args.test))
    x_train = np.stack([image_features(im) for im in train_images])
    x_test = np.stack([image_features(im) for im in test_images])
    model = fit_logistic(x_train, train_labels, l2=1e-3)
    for name, weight in zip(FEATURE_NAMES, model.weights, strict=True):
        logger.info("%-28s %+.3f", name, weight)
    scores = model.predict(x_test)
    for threshold in (0.3, 0.5, 0.7):
        logger.info("held-out threshold %.1f: precision %.3f recall %.3f", threshold,
                    *precision_recall(scores, test_labels, threshold))
    np.set_printoptions(precision=5, floatmode="maxprec", linewidth=110)
    logger.info("FEATURE_MEAN = %r\nFEATURE_SCALE = %r\nWEIGHTS = %r\nBIAS = %r",
                model.mean, model.scale, model.weights, model.bias)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
