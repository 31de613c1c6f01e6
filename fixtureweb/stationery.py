"""Printed and handwritten things found on herbarium sheets, packets and labels."""

from __future__ import annotations

import math
import random
from functools import lru_cache

from PIL import ImageDraw, ImageFont

from fixtureweb import names
from fixtureweb.drawing import RGB, Point

INK_BLACK: RGB = (30, 28, 32)
INK_BLUE: RGB = (35, 45, 120)
_COLOR_PATCHES: tuple[RGB, ...] = (
    (0, 160, 220), (220, 0, 140), (250, 220, 0), (200, 30, 30), (30, 150, 60), (30, 50, 170),
    (20, 20, 20), (250, 250, 250), (128, 128, 128), (190, 120, 80),
)


@lru_cache(maxsize=64)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at `size` px (no system fonts needed)."""
    return ImageFont.load_default(size=max(6, size))


def label_lines(rng: random.Random) -> list[str]:
    """Typical lines of a fungarium label: institution, taxon, locality, collector, date, number."""
    genus = names.genus_name(rng)
    return [
        f"HERBARIUM {rng.choice(('UNIVERSITATIS', 'MUSEI', 'HORTI BOTANICI'))} {names.genus_name(rng).upper()}",
        f"{genus} {names.epithet(rng)} {names.authorship(rng)}",
        f"Loc.: {names.genus_name(rng)}, {rng.randint(1, 40)} km {rng.choice('NSEW')} of {names.genus_name(rng)}",
        f"Hab.: {rng.choice(('on soil', 'on wood', 'in moss', 'under Picea', 'in grass'))}",
        f"Leg. {rng.choice('ABCDEFGHJKLMNPRST')}. {names.genus_name(rng)}   Det. {names.genus_name(rng)}",
        f"{rng.randint(1, 28)}.{rng.randint(1, 12)}.{rng.randint(1880, 2020)}    No. {rng.randint(100, 99999)}",
    ]


def text_block(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], lines: list[str],
               ink: RGB, rng: random.Random) -> None:
    """Print `lines` into `box`, with the largest font at which every line fits (some lines may be
    left blank, as on real labels)."""
    x0, y0, x1, y1 = box
    line_h = (y1 - y0) / max(len(lines), 1)
    size = int(line_h * 0.75)
    longest = max(lines, key=len)
    width_at_size = font(size).getlength(longest)
    if width_at_size > x1 - x0:
        size = int(size * (x1 - x0) / width_at_size)
    f = font(size)
    for i, line in enumerate(lines):
        if i >= 2 and rng.random() < 0.1:
            continue
        draw.text((x0, y0 + i * line_h + line_h * 0.1), line, fill=ink, font=f)


def barcode(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], rng: random.Random) -> None:
    x0, y0, x1, y1 = box
    module = max(1, round((x1 - x0) / 70))
    x = round(x0)
    while x < x1:
        w = module * rng.choice((1, 1, 2, 3))
        if rng.random() < 0.5:
            draw.rectangle((x, y0, x + w - 1, y1), fill=INK_BLACK)
        x += w


def ruler(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], rng: random.Random) -> None:
    """A black-and-white scale bar with ticks, horizontal in `box`."""
    x0, y0, x1, y1 = box
    draw.rectangle(box, fill=(245, 245, 240), outline=INK_BLACK)
    segments = rng.choice((5, 10))
    seg = (x1 - x0) / segments
    for i in range(segments):
        if i % 2 == 0:
            draw.rectangle((x0 + i * seg, y0, x0 + (i + 1) * seg, y0 + (y1 - y0) * 0.45), fill=INK_BLACK)
        for k in range(10):
            tx = x0 + i * seg + k * seg / 10
            draw.line([(tx, y1), (tx, y1 - (y1 - y0) * (0.35 if k == 5 else 0.2))], fill=INK_BLACK, width=1)


def color_bar(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float]) -> None:
    x0, y0, x1, y1 = box
    w = (x1 - x0) / len(_COLOR_PATCHES)
    for i, col in enumerate(_COLOR_PATCHES):
        draw.rectangle((x0 + i * w, y0, x0 + (i + 1) * w, y1), fill=col)
    draw.rectangle(box, outline=INK_BLACK)


def handwriting(draw: ImageDraw.ImageDraw, start: Point, width: float, height: float, ink: RGB,
                rng: random.Random, pen: int) -> None:
    """One line of cursive-looking script: words of joined loops with a slight slant."""
    x, y = start
    end = x + width
    slant = rng.uniform(0.1, 0.4)
    while x < end:
        word = rng.randint(2, 8)
        points: list[Point] = []
        for _ in range(word * 6):
            t = len(points)
            amp = height * (0.5 if rng.random() < 0.85 else 1.0)
            dy = -amp * (0.5 + 0.5 * math.sin(t * 1.9 + rng.uniform(-0.3, 0.3)))
            points.append((x - dy * slant, y + dy))
            x += height * rng.uniform(0.1, 0.2)
        draw.line(points, fill=ink, width=pen, joint="curve")
        x += height * rng.uniform(0.5, 1.0)
