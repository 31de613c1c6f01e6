"""Filling a polygon with a lit, rounded-looking colour instead of a flat one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

from fixtureweb.drawing import RGB, Point


def shaded_polygon(image: Image.Image, polygon: Sequence[Point], color: RGB, *, light: float = 0.0,
                   gloss: float = 0.0, axis: Literal["x", "y"] = "x", disc: RGB | None = None,
                   disc_center: Point | None = None, disc_radius: float = 0.0) -> None:
    """Paint `polygon` on `image` as a lit cylinder/dome: brighter in the middle and on the `light` side
    (-1 left .. 1 right), darker towards the lower edge, optionally a darker `disc` round `disc_center`
    and a soft specular highlight of strength `gloss`."""
    xs = [p[0] for p in polygon]
    ys = [p[1] for p in polygon]
    x0, y0 = max(0, int(min(xs))), max(0, int(min(ys)))
    x1, y1 = min(image.width, int(max(xs)) + 2), min(image.height, int(max(ys)) + 2)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return
    w, h = x1 - x0, y1 - y0
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).polygon([(x - x0, y - y0) for x, y in polygon], fill=255)
    # Normalised coordinates over the polygon's full extent (not the clipped box).
    span_x = max(max(xs) - min(xs), 1.0)
    span_y = max(max(ys) - min(ys), 1.0)
    u = ((np.arange(x0, x1, dtype=np.float32) - min(xs)) / span_x * 2 - 1)[None, :]
    v = ((np.arange(y0, y1, dtype=np.float32) - min(ys)) / span_y)[:, None]
    across = u if axis == "x" else (v * 2 - 1)
    roundness = np.sqrt(np.clip(1 - across * across, 0, 1))
    gain = 0.68 + 0.32 * roundness + 0.18 * light * across - 0.12 * v
    rgb = np.broadcast_to(np.asarray(color, dtype=np.float32), (h, w, 3)).copy()
    if disc is not None and disc_center is not None and disc_radius > 0:
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] - disc_center[0]
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] - disc_center[1]
        t = np.exp(-(dx * dx + dy * dy) / (disc_radius * disc_radius))[:, :, None]
        rgb = rgb * (1 - t) + np.asarray(disc, dtype=np.float32) * t
    rgb *= gain[:, :, None]
    if gloss > 0:
        hu, hv = -0.35 * (light or 0.5), 0.25
        spot = np.exp(-(((u - hu) / 0.35) ** 2 + ((v - hv) / 0.2) ** 2))
        rgb += (255 * gloss * 0.6 * spot)[:, :, None]
    fill = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    image.paste(fill, (x0, y0), mask)
