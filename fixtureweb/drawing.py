"""Drawing primitives shared by the species and irrelevant-image renderers.

Everything is deterministic from an explicit seed: scalar draws use `random.Random` (cheap per call),
arrays use a numpy `Generator` seeded from the same value.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import random
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RGB = tuple[int, int, int]
Size = tuple[int, int]
Point = tuple[float, float]


def derive_seed(*parts: object) -> int:
    """A stable 64-bit seed from any printable parts (Python's hash() is salted per process)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rngs(*parts: object) -> tuple[random.Random, np.random.Generator]:
    seed = derive_seed(*parts)
    return random.Random(seed), np.random.default_rng(seed)


def as_size(size: int | Size) -> Size:
    if isinstance(size, int):
        return (size, size)
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {size!r}")
    return (int(width), int(height))


def hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (round(r * 255), round(g * 255), round(b * 255))


def jitter(rgb: RGB, rng: random.Random, amount: int) -> RGB:
    r, g, b = (min(255, max(0, c + rng.randint(-amount, amount))) for c in rgb)
    return (r, g, b)


def scale_rgb(rgb: RGB, factor: float) -> RGB:
    r, g, b = (min(255, max(0, round(c * factor))) for c in rgb)
    return (r, g, b)


def mix(a: RGB, b: RGB, t: float) -> RGB:
    r, g, bl = (round(x * (1 - t) + y * t) for x, y in zip(a, b, strict=True))
    return (r, g, bl)


def noise_field(gen: np.random.Generator, size: Size, cells: int) -> np.ndarray:
    """Smooth value noise in [0, 1], shape (height, width): a small random grid upsampled bicubically."""
    width, height = size
    gw = max(2, cells)
    gh = max(2, round(cells * height / max(width, 1)))
    grid = (gen.random((gh, gw), dtype=np.float32) * 255).astype(np.uint8)
    up = Image.fromarray(grid, "L").resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(up, dtype=np.float32) / 255.0


def textured_fill(gen: np.random.Generator, size: Size, base: RGB, contrast: float, cells: int = 8) -> Image.Image:
    """A flat colour modulated by two octaves of noise: paper, soil, moss, bark."""
    coarse = noise_field(gen, size, cells)
    fine = noise_field(gen, size, cells * 6)
    shade = 1.0 + contrast * ((coarse - 0.5) * 1.2 + (fine - 0.5) * 0.6)
    arr = np.asarray(base, dtype=np.float32)[None, None, :] * shade[:, :, None]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def leaf_polygon(cx: float, cy: float, length: float, width: float, angle: float) -> list[Point]:
    """An almond-shaped leaf outline centred on (cx, cy)."""
    pts: list[Point] = []
    ca, sa = math.cos(angle), math.sin(angle)
    steps = 8
    for i in range(steps + 1):
        t = i / steps
        x, y = (t - 0.5) * length, math.sin(math.pi * t) * width / 2
        pts.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
    for i in range(steps - 1, 0, -1):
        t = i / steps
        x, y = (t - 0.5) * length, -math.sin(math.pi * t) * width / 2
        pts.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
    return pts


def blade_polygon(x0: float, y0: float, length: float, width: float, bend: float, angle: float) -> list[Point]:
    """A grass blade rising from (x0, y0): tapering to a point, bending sideways by `bend`."""
    left: list[Point] = []
    right: list[Point] = []
    steps = 6
    for i in range(steps + 1):
        t = i / steps
        cx = x0 + math.sin(angle) * length * t + bend * t * t
        cy = y0 - math.cos(angle) * length * t
        half = width * (1 - t) / 2
        left.append((cx - half, cy))
        right.append((cx + half, cy))
    return left + right[::-1]


def soft_blur(img: Image.Image, factor: float) -> Image.Image:
    """A cheap strong blur (depth of field): shrink then enlarge."""
    if factor <= 1.0:
        return img
    w, h = img.size
    small = img.resize((max(1, int(w / factor)), max(1, int(h / factor))), Image.Resampling.BILINEAR)
    return small.resize((w, h), Image.Resampling.BILINEAR)


def camera_effects(img: Image.Image, rng: random.Random, gen: np.random.Generator,
                   light: float = 0.35, noise: float = 6.0, blur: float = 0.0, vignette: float = 0.3) -> Image.Image:
    """Lighting gradient, vignette, lens blur and sensor noise on an RGB image."""
    if blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    w, h = img.size
    angle = rng.uniform(0, 2 * math.pi)
    xs = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    ys = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    gain = 1.0 + light * 0.5 * (xs * math.cos(angle) + ys * math.sin(angle)) - vignette * 0.25 * (xs * xs + ys * ys)
    gain *= np.float32(rng.uniform(0.85, 1.15))
    arr = np.asarray(img, dtype=np.float32) * gain[:, :, None]
    if noise > 0:
        arr += gen.standard_normal((h, w, 1), dtype=np.float32) * np.float32(noise)
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def polyline(draw: ImageDraw.ImageDraw, points: Sequence[Point], fill: RGB | tuple[int, int, int, int],
             width: int) -> None:
    if len(points) >= 2:
        draw.line(list(points), fill=fill, width=max(1, width), joint="curve")
