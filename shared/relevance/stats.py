"""Image statistics of a photo: paper, strokes, straight edges, saturation... cheap cues of "not a field photo".

Herbarium sheets, envelopes, labels and microscope slides differ from field photos of a mushroom in plain
statistics: large areas of paper-white or kraft paper, little saturated colour, dark text strokes on a light
ground, long straight edges, a dark surround with a bright disc (microscopy). :func:`image_features`
measures those on a 64x64 thumbnail. They are features of the relevance probe (:mod:`shared.relevance.gate`),
weighed by human labels.

:func:`statistics_score` is the old stage-1 filter: fixed logistic weights fitted to the fixture web's drawn
sheets and envelopes. It is kept only as the baseline the relevance benchmark compares against (it misjudges
real photos: picked mushrooms on white paper look like sheets to it); nothing decides with it by default.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

THUMB = 64
FEATURE_NAMES: tuple[str, ...] = (
    "paper_share",  # low-saturation bright pixels: white paper, cards, labels
    "kraft_share",  # brown-orange paper of mid saturation covering flat areas
    "mean_saturation",
    "saturation_spread",
    "green_share",  # moss, grass, leaves around field photos
    "dark_share",  # near-black pixels (microscope surround, shadows)
    "corner_dark_centre_bright",  # a bright disc in a dark field: microscopy
    "edge_density",  # share of pixels on a strong edge
    "stroke_density",  # thin dark strokes on a light ground: printed or handwritten text
    "axis_edge_ratio",  # horizontal/vertical edges over all edges: sheets, labels, rulers
    "flat_share",  # pixels whose neighbourhood hardly changes: paper, blank background
    "hue_entropy",  # spread of the colour histogram
    "value_mean",
    "border_uniformity",  # how alike the frame of the picture is (a sheet on a table, a slide)
)

# The baseline's logistic weights over standardized features, fitted to 600 seeds of the fixture web's drawn images.
FEATURE_MEAN = np.array([0.23186, 0.03826, 0.31999, 0.09417, 0.21949, 0.07987, 0.08325, 0.12497, 0.01162, 0.394,
                         0.46255, 0.22376, 0.48885, 0.76272], dtype=np.float32)
FEATURE_SCALE = np.array([0.34753, 0.10052, 0.23804, 0.05683, 0.37452, 0.20348, 0.20985, 0.06266, 0.02056, 0.1936,
                          0.20271, 0.1733, 0.20857, 0.17164], dtype=np.float32)
WEIGHTS = np.array([1.22202, 0.77715, -1.58615, 0.8587, -0.26928, 0.7538, 0.884, 0.53542, 0.88386, 0.04528,
                    1.51224, 0.00946, 1.3794, 1.32232], dtype=np.float32)
BIAS = -0.19680


def thumbnail(image: Image.Image, side: int = THUMB) -> np.ndarray:
    """The picture as a side x side float RGB array in 0..1 (aspect ratio ignored on purpose)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    small = image.resize((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(small, dtype=np.float32) / 255.0


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    maxc = rgb.max(axis=2)
    minc = rgb.min(axis=2)
    delta = maxc - minc
    sat = np.where(maxc > 1e-6, delta / np.maximum(maxc, 1e-6), 0.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.maximum(delta, 1e-6)
    hue = np.where(maxc == r, ((g - b) / safe) % 6.0, np.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    hue = np.where(delta > 1e-6, hue / 6.0, 0.0)
    return hue, sat, maxc


def image_features(image: Image.Image) -> np.ndarray:
    """The stage-1 feature vector (order: FEATURE_NAMES)."""
    return thumbnail_features(thumbnail(image))


def thumbnail_features(rgb: np.ndarray) -> np.ndarray:
    """Stage-1 features of a THUMB x THUMB float RGB array from :func:`thumbnail`."""
    hue, sat, val = _hsv(rgb)
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)

    paper = (sat < 0.2) & (val > 0.7)
    kraft = (hue > 0.05) & (hue < 0.12) & (sat > 0.3) & (sat < 0.6) & (val > 0.55) & (val < 0.85)
    green = (hue > 0.17) & (hue < 0.45) & (sat > 0.25)
    dark = val < 0.12

    gx = np.abs(np.diff(gray, axis=1))[:-1, :]
    gy = np.abs(np.diff(gray, axis=0))[:, :-1]
    magnitude = gx + gy
    strong = magnitude > 0.12
    edge_density = float(strong.mean())
    axis = (((gx > 0.12) & (gy < 0.03)) | ((gy > 0.12) & (gx < 0.03))).sum()
    axis_ratio = float(axis / max(strong.sum(), 1))
    flat_share = float((magnitude < 0.02).mean())

    # A stroke: a pixel clearly darker than its 3x3 neighbourhood mean, on a light ground.
    padded = np.pad(gray, 1, mode="edge")
    local = sum(padded[dy:dy + THUMB, dx:dx + THUMB] for dy in range(3) for dx in range(3)) / 9.0
    stroke = (gray < local - 0.08) & (local > 0.55)

    q = THUMB // 4
    corners = np.concatenate([val[:q, :q].ravel(), val[:q, -q:].ravel(), val[-q:, :q].ravel(), val[-q:, -q:].ravel()])
    centre = val[q:-q, q:-q]
    disc = float(np.clip(centre.mean() - corners.mean(), -1, 1) * (corners < 0.15).mean())

    hist = np.bincount(np.minimum(hue[sat > 0.15] * 12, 11).astype(np.int64), minlength=12)
    total = hist.sum()
    probs = hist[hist > 0] / total if total else np.ones(1)
    entropy = float(-(probs * np.log(probs)).sum() / np.log(12))

    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    border_uniformity = float(1.0 - min(border.std() * 4.0, 1.0))

    return np.array([
        paper.mean(), kraft.mean(), sat.mean(), sat.std(), green.mean(), dark.mean(), disc,
        edge_density, stroke.mean(), axis_ratio, flat_share, entropy, val.mean(), border_uniformity,
    ], dtype=np.float32)


def score_features(features: np.ndarray) -> np.ndarray:
    """Logistic score for a (n, len(FEATURE_NAMES)) or (len(FEATURE_NAMES),) array."""
    z = ((features - FEATURE_MEAN) / FEATURE_SCALE) @ WEIGHTS + BIAS
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def statistics_score(image: Image.Image) -> float:
    """The baseline: 0..1 from the fixed weights (fitted to drawn fixtures; see the module docstring)."""
    return float(score_features(image_features(image)))
