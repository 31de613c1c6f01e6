"""Grad-CAM maps drawn over the photo, as a base64 PNG the web page can show."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

OVERLAY_SIZE = 224


def _colormap(values: np.ndarray) -> np.ndarray:
    """A blue -> green -> yellow -> red ramp for values in [0, 1] (uint8 RGB)."""
    v = np.clip(values, 0, 1)[..., None]
    stops = np.array([[0, 0, 128], [0, 160, 255], [0, 220, 80], [255, 230, 0], [230, 20, 0]], np.float32)
    position = v * (len(stops) - 1)
    low = np.floor(position).astype(int).clip(0, len(stops) - 2)
    frac = position - low
    rgb = stops[low[..., 0]] * (1 - frac) + stops[low[..., 0] + 1] * frac
    return rgb.astype(np.uint8)


def overlay_png(image: np.ndarray, cam: np.ndarray) -> str:
    """``cam`` (h, w in [0, 1]) blended over the model input ``image``; base64 PNG."""
    photo = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).resize((OVERLAY_SIZE, OVERLAY_SIZE))
    cam_img = Image.fromarray((np.clip(cam, 0, 1) * 255).astype(np.uint8)).resize(
        (OVERLAY_SIZE, OVERLAY_SIZE), Image.Resampling.BILINEAR
    )
    heat = Image.fromarray(_colormap(np.asarray(cam_img, np.float32) / 255))
    blended = Image.blend(photo, heat, 0.45)
    buffer = io.BytesIO()
    blended.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
