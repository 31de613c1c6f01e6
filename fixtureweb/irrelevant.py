"""Synthetic images that are not field photos of a mushroom, of the kinds real harvests contain."""

from __future__ import annotations

import math
import random
from enum import StrEnum

import numpy as np
from PIL import Image, ImageDraw

from fixtureweb.drawing import (
    Point,
    Size,
    as_size,
    camera_effects,
    hsv,
    jitter,
    rngs,
    scale_rgb,
    textured_fill,
)
from fixtureweb.stationery import (
    INK_BLACK,
    INK_BLUE,
    barcode,
    color_bar,
    handwriting,
    label_lines,
    ruler,
    text_block,
)


class IrrelevantKind(StrEnum):
    HERBARIUM_SHEET = "herbarium_sheet"
    ENVELOPE = "envelope"
    MICROSCOPE = "microscope"
    LABEL = "label"


def render_irrelevant(kind: IrrelevantKind | str, seed: int, size: int | Size = 256) -> Image.Image:
    """An RGB image of `kind`, deterministic from (kind, seed)."""
    kind = IrrelevantKind(kind)
    width, height = as_size(size)
    rng, gen = rngs("irrelevant", kind.value, seed)
    image = _RENDERERS[kind](rng, gen, (width, height))
    return camera_effects(image, rng, gen, light=rng.uniform(0.0, 0.3), noise=rng.uniform(1.0, 4.0),
                          blur=rng.uniform(0.0, 0.8) if rng.random() < 0.3 else 0.0, vignette=rng.uniform(0.0, 0.4))


def _paper(rng: random.Random, gen: np.random.Generator, size: Size, kraft: bool = False) -> Image.Image:
    base = hsv(rng.uniform(0.07, 0.1), rng.uniform(0.35, 0.55), rng.uniform(0.6, 0.8)) if kraft else \
        hsv(rng.uniform(0.1, 0.15), rng.uniform(0.03, 0.16), rng.uniform(0.86, 0.97))
    return textured_fill(gen, size, base, 0.08, cells=6)


def _dried_specimen(draw: ImageDraw.ImageDraw, rng: random.Random, center: Point, scale: float) -> None:
    """A shrivelled, dark brown fruit body lying on the paper: wrinkled cap blob and a twisted stem."""
    cx, cy = center
    col = hsv(rng.uniform(0.04, 0.09), rng.uniform(0.4, 0.7), rng.uniform(0.15, 0.4))
    angle = rng.uniform(0, 2 * math.pi)
    stem_len = scale * rng.uniform(0.6, 1.4)
    sx, sy = cx + math.cos(angle) * stem_len, cy + math.sin(angle) * stem_len
    mid = ((cx + sx) / 2 + rng.uniform(-0.2, 0.2) * scale, (cy + sy) / 2 + rng.uniform(-0.2, 0.2) * scale)
    draw.line([(cx, cy), mid, (sx, sy)], fill=scale_rgb(col, 1.3), width=max(2, int(scale * 0.15)), joint="curve")
    blob: list[Point] = []
    radius = scale * rng.uniform(0.4, 0.7)
    squash = rng.uniform(0.45, 0.9)
    for i in range(18):
        a = 2 * math.pi * i / 18
        r = radius * rng.uniform(0.75, 1.1)
        blob.append((cx + math.cos(a) * r, cy + math.sin(a) * r * squash))
    draw.polygon(blob, fill=col)
    for _ in range(5):  # wrinkles
        a = rng.uniform(0, 2 * math.pi)
        draw.line([(cx, cy), (cx + math.cos(a) * radius * 0.8, cy + math.sin(a) * radius * squash * 0.8)],
                  fill=scale_rgb(col, 0.6), width=max(1, int(scale * 0.04)))


def _herbarium_sheet(rng: random.Random, gen: np.random.Generator, size: Size) -> Image.Image:
    width, height = size
    backdrop = hsv(0, 0, rng.uniform(0.1, 0.5))
    image = Image.new("RGB", size, backdrop)
    margin_x, margin_y = width * rng.uniform(0.02, 0.1), height * rng.uniform(0.02, 0.06)
    sheet_box = (int(margin_x), int(margin_y), int(width - margin_x), int(height - margin_y))
    sw, sh = sheet_box[2] - sheet_box[0], sheet_box[3] - sheet_box[1]
    image.paste(_paper(rng, gen, (sw, sh)), sheet_box[:2])
    draw = ImageDraw.Draw(image)
    x0, y0 = sheet_box[:2]
    # Specimens in the upper part, or a packet glued on holding them.
    if rng.random() < 0.35:
        pw, ph = sw * rng.uniform(0.35, 0.5), sh * rng.uniform(0.2, 0.3)
        px, py = x0 + sw * rng.uniform(0.1, 0.4), y0 + sh * rng.uniform(0.1, 0.3)
        draw.rectangle((px, py, px + pw, py + ph), fill=hsv(0.1, 0.25, 0.85), outline=scale_rgb(backdrop, 0.5))
        draw.line([(px, py + ph * 0.3), (px + pw, py + ph * 0.3)], fill=(150, 140, 120), width=1)
        handwriting(draw, (px + pw * 0.1, py + ph * 0.6), pw * 0.8, ph * 0.18, INK_BLUE, rng, 1)
    for _ in range(rng.randint(1, 4)):
        _dried_specimen(draw, rng, (x0 + sw * rng.uniform(0.2, 0.8), y0 + sh * rng.uniform(0.15, 0.55)),
                        min(sw, sh) * rng.uniform(0.06, 0.14))
    # Printed label block at the lower right, barcode beside it.
    lw, lh = sw * rng.uniform(0.4, 0.55), sh * rng.uniform(0.14, 0.22)
    lx, ly = x0 + sw - lw - sw * 0.04, y0 + sh - lh - sh * 0.04
    draw.rectangle((lx, ly, lx + lw, ly + lh), fill=(250, 250, 244), outline=(90, 90, 90))
    text_block(draw, (lx + lw * 0.04, ly + lh * 0.06, lx + lw * 0.96, ly + lh * 0.94), label_lines(rng),
               INK_BLACK, rng)
    barcode(draw, (x0 + sw * 0.05, ly + lh * 0.4, x0 + sw * 0.3, ly + lh), rng)
    # Scale and colour reference.
    if rng.random() < 0.8:
        ry = y0 + sh * rng.uniform(0.62, 0.7)
        ruler(draw, (x0 + sw * 0.05, ry, x0 + sw * 0.45, ry + sh * 0.025), rng)
        color_bar(draw, (x0 + sw * 0.5, ry, x0 + sw * 0.95, ry + sh * 0.03))
    if rng.random() < 0.5:  # an institution's stamp
        r = min(sw, sh) * 0.06
        cx, cy = x0 + sw * rng.uniform(0.6, 0.85), y0 + sh * rng.uniform(0.05, 0.15)
        ink = jitter((170, 40, 50), rng, 20) if rng.random() < 0.5 else INK_BLUE
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=ink, width=max(1, int(r * 0.1)))
        draw.ellipse((cx - r * 0.7, cy - r * 0.7, cx + r * 0.7, cy + r * 0.7), outline=ink, width=1)
    return image


def _envelope(rng: random.Random, gen: np.random.Generator, size: Size) -> Image.Image:
    width, height = size
    image = textured_fill(gen, size, hsv(rng.uniform(0, 1), rng.uniform(0, 0.2), rng.uniform(0.2, 0.6)), 0.1)
    kraft = rng.random() < 0.6
    ew, eh = width * rng.uniform(0.6, 0.9), height * rng.uniform(0.45, 0.75)
    paper = _paper(rng, gen, (int(ew), int(eh)), kraft=kraft)
    draw = ImageDraw.Draw(paper)
    edge = scale_rgb(paper.getpixel((0, 0)), 0.75)  # type: ignore[arg-type]
    # The back flap: two folds meeting below the middle.
    fold_y = eh * rng.uniform(0.4, 0.6)
    draw.line([(0, 0), (ew / 2, fold_y), (ew, 0)], fill=edge, width=max(1, int(eh * 0.01)))
    draw.line([(0, eh), (ew * 0.4, eh * 0.55)], fill=edge, width=1)
    draw.line([(ew, eh), (ew * 0.6, eh * 0.55)], fill=edge, width=1)
    ink = INK_BLUE if rng.random() < 0.5 else INK_BLACK
    lines = rng.randint(2, 5)
    for i in range(lines):
        y = eh * (0.55 + 0.4 * (i + 1) / (lines + 1))
        handwriting(draw, (ew * rng.uniform(0.08, 0.2), y), ew * rng.uniform(0.4, 0.75), eh * 0.05, ink, rng,
                    max(1, int(eh * 0.008)))
    if rng.random() < 0.5:  # a printed number or barcode sticker
        sx, sy = ew * 0.65, eh * 0.08
        draw.rectangle((sx, sy, sx + ew * 0.28, sy + eh * 0.14), fill=(250, 250, 250))
        barcode(draw, (sx + ew * 0.02, sy + eh * 0.02, sx + ew * 0.26, sy + eh * 0.12), rng)
    rotated = paper.convert("RGBA").rotate(rng.uniform(-12, 12), resample=Image.Resampling.BILINEAR, expand=True)
    image.paste(rotated, (int((width - rotated.width) / 2), int((height - rotated.height) / 2)), rotated)
    return image


def _microscope(rng: random.Random, gen: np.random.Generator, size: Size) -> Image.Image:
    width, height = size
    stain = hsv(rng.choice((0.12, 0.6, 0.9, 0.15)), rng.uniform(0.05, 0.35), rng.uniform(0.85, 1.0))
    xs = np.linspace(-1, 1, width, dtype=np.float32)[None, :] * (width / max(width, height))
    ys = np.linspace(-1, 1, height, dtype=np.float32)[:, None] * (height / max(width, height))
    cx, cy = rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1)
    r2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / (rng.uniform(0.75, 0.95) * min(width, height) / max(width, height)) ** 2
    field = np.clip(1.0 - r2 ** 3, 0, 1) * (1.0 - 0.35 * r2)
    arr = np.asarray(stain, dtype=np.float32)[None, None, :] * field[:, :, None]
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image, "RGBA")
    unit = min(width, height)
    cell = hsv(rng.uniform(0.05, 0.12), rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7))
    for _ in range(rng.randint(2, 6)):  # hyphae: long septate threads
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        a = rng.uniform(0, 2 * math.pi)
        pts: list[Point] = []
        for _ in range(12):
            pts.append((x, y))
            a += rng.uniform(-0.3, 0.3)
            x += math.cos(a) * unit * 0.05
            y += math.sin(a) * unit * 0.05
        draw.line(pts, fill=(*scale_rgb(cell, 1.2), 160), width=max(1, int(unit * 0.012)), joint="curve")
    spore_len = unit * rng.uniform(0.03, 0.07)
    for _ in range(rng.randint(15, 60)):  # spores: ellipses with a dark wall
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        a = rng.uniform(0, math.pi)
        ln, wd = spore_len * rng.uniform(0.8, 1.2), spore_len * rng.uniform(0.45, 0.7)
        pts = [(x + math.cos(a) * ln * math.cos(t) - math.sin(a) * wd * math.sin(t),
                y + math.sin(a) * ln * math.cos(t) + math.cos(a) * wd * math.sin(t))
               for t in (2 * math.pi * k / 14 for k in range(14))]
        draw.polygon(pts, fill=(*cell, 150), outline=(*scale_rgb(cell, 0.45), 230))
    image = Image.fromarray((np.asarray(image, dtype=np.float32) * field[:, :, None] ** 0.3).astype(np.uint8))
    if rng.random() < 0.5:  # scale bar
        draw = ImageDraw.Draw(image)
        draw.line([(width * 0.75, height * 0.92), (width * 0.92, height * 0.92)], fill=(240, 240, 240),
                  width=max(1, int(height * 0.012)))
    return image


def _label(rng: random.Random, gen: np.random.Generator, size: Size) -> Image.Image:
    width, height = size
    image = _paper(rng, gen, size)
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.6:
        inset = min(width, height) * rng.uniform(0.03, 0.08)
        draw.rectangle((inset, inset, width - inset, height - inset), outline=INK_BLACK,
                       width=max(1, int(inset * 0.15)))
    lines = label_lines(rng)
    rng.shuffle(lines)
    text_block(draw, (width * 0.1, height * 0.12, width * 0.95, height * rng.uniform(0.6, 0.85)), lines,
               INK_BLACK, rng)
    if rng.random() < 0.5:
        handwriting(draw, (width * 0.1, height * 0.9), width * 0.6, height * 0.04, INK_BLUE, rng,
                    max(1, int(height * 0.006)))
    return image


_RENDERERS = {
    IrrelevantKind.HERBARIUM_SHEET: _herbarium_sheet,
    IrrelevantKind.ENVELOPE: _envelope,
    IrrelevantKind.MICROSCOPE: _microscope,
    IrrelevantKind.LABEL: _label,
}
