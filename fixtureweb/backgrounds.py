"""Ground behind a mushroom: leaf litter, grass, moss or dead wood, slightly out of focus."""

from __future__ import annotations

import math
import random
from enum import StrEnum

import numpy as np
from PIL import Image, ImageDraw

from fixtureweb.drawing import Size, blade_polygon, hsv, leaf_polygon, textured_fill


class Habitat(StrEnum):
    LITTER = "litter"
    GRASS = "grass"
    MOSS = "moss"
    WOOD = "wood"


def render_background(habitat: Habitat, rng: random.Random, gen: np.random.Generator, size: Size,
                      defocus: float = 2.0) -> Image.Image:
    """The ground at `size`, drawn at 1/`defocus` of it and enlarged: the blur of a shallow depth of
    field comes for free and a small canvas is quick to fill."""
    out_size = size
    width, height = max(8, int(size[0] / defocus)), max(8, int(size[1] / defocus))
    size = (width, height)
    if habitat == Habitat.LITTER:
        image = textured_fill(gen, size, hsv(rng.uniform(0.05, 0.1), rng.uniform(0.4, 0.7),
                                             rng.uniform(0.25, 0.45)), 0.5)
        draw = ImageDraw.Draw(image)
        for _ in range(rng.randint(40, 80)):
            col = hsv(rng.uniform(0.02, 0.14), rng.uniform(0.35, 0.85), rng.uniform(0.25, 0.75))
            draw.polygon(leaf_polygon(rng.uniform(0, width), rng.uniform(0, height),
                                      width * rng.uniform(0.06, 0.16), width * rng.uniform(0.03, 0.07),
                                      rng.uniform(0, math.pi)), fill=col)
        for _ in range(rng.randint(2, 6)):
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            a, length = rng.uniform(0, math.pi), width * rng.uniform(0.15, 0.4)
            draw.line([(x, y), (x + math.cos(a) * length, y + math.sin(a) * length)],
                      fill=hsv(0.07, 0.5, rng.uniform(0.15, 0.35)), width=max(1, int(width * 0.01)))
    elif habitat == Habitat.GRASS:
        image = textured_fill(gen, size, hsv(rng.uniform(0.2, 0.3), rng.uniform(0.5, 0.8),
                                             rng.uniform(0.25, 0.45)), 0.5)
        draw = ImageDraw.Draw(image)
        for _ in range(rng.randint(60, 120)):
            col = hsv(rng.uniform(0.17, 0.33), rng.uniform(0.35, 0.85), rng.uniform(0.25, 0.8))
            draw.polygon(blade_polygon(rng.uniform(0, width), rng.uniform(height * 0.1, height * 1.1),
                                       height * rng.uniform(0.1, 0.35), width * rng.uniform(0.006, 0.016),
                                       rng.uniform(-0.1, 0.1) * height, rng.uniform(-0.5, 0.5)), fill=col)
    elif habitat == Habitat.MOSS:
        image = textured_fill(gen, size, hsv(rng.uniform(0.18, 0.27), rng.uniform(0.5, 0.85),
                                             rng.uniform(0.3, 0.55)), 0.9, cells=12)
        draw = ImageDraw.Draw(image)
        for _ in range(rng.randint(80, 160)):
            x, y, r = rng.uniform(0, width), rng.uniform(0, height), width * rng.uniform(0.004, 0.012)
            draw.ellipse((x - r, y - r, x + r, y + r),
                         fill=hsv(rng.uniform(0.17, 0.3), rng.uniform(0.4, 0.8), rng.uniform(0.4, 0.8)))
    else:
        image = textured_fill(gen, size, hsv(rng.uniform(0.06, 0.1), rng.uniform(0.3, 0.6),
                                             rng.uniform(0.2, 0.4)), 0.4)
        draw = ImageDraw.Draw(image)
        # A fallen log across the frame with bark furrows.
        top = height * rng.uniform(0.35, 0.6)
        log_col = hsv(rng.uniform(0.05, 0.1), rng.uniform(0.3, 0.55), rng.uniform(0.3, 0.5))
        draw.rectangle((0, top, width, height), fill=log_col)
        for _ in range(rng.randint(15, 30)):
            y = rng.uniform(top, height)
            x = rng.uniform(-0.2, 0.8) * width
            draw.line([(x, y), (x + width * rng.uniform(0.2, 0.6), y + rng.uniform(-3, 3))],
                      fill=hsv(0.07, 0.5, rng.uniform(0.1, 0.25)), width=max(1, int(height * 0.008)))
    return image.resize(out_size, Image.Resampling.BILINEAR)
