"""Synthetic mushroom species: a deterministic catalog and a procedural photo renderer.

A genus fixes the cap shape, the palette family, gills or pores and the habitat it prefers; a species
perturbs hue, spots, pattern and proportions. Classes in one genus therefore look more alike than classes
in different genera, and a catalog of 50 classes (more genera squeezed into the same colour space, more
species per genus) is really harder to learn than one of 10.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from PIL import Image, ImageDraw

from fixtureweb import names
from fixtureweb.backgrounds import Habitat, render_background
from fixtureweb.drawing import (
    RGB,
    Point,
    Size,
    as_size,
    blade_polygon,
    camera_effects,
    hsv,
    jitter,
    leaf_polygon,
    mix,
    rngs,
    scale_rgb,
)
from fixtureweb.shading import shaded_polygon

MAX_CLASSES = 100


class CapShape(StrEnum):
    CONVEX = "convex"
    BELL = "bell"
    CONICAL = "conical"
    UMBONATE = "umbonate"
    FLAT = "flat"
    FUNNEL = "funnel"
    CUSHION = "cushion"


class Pattern(StrEnum):
    PLAIN = "plain"
    SPOTS = "spots"
    ZONES = "zones"
    STREAKS = "streaks"
    SCALES = "scales"


@dataclass(frozen=True)
class Genus:
    name: str
    family: str
    order: str
    cap_shape: CapShape
    hue: float
    saturation: float
    value: float
    pores: bool
    ring: bool
    habitat: Habitat


@dataclass(frozen=True)
class Species:
    """One class: its names and the visual traits every photo of it shares."""

    index: int
    genus: Genus
    epithet: str
    author: str
    cap_color: RGB
    disc_color: RGB
    underside_color: RGB
    stem_color: RGB
    pattern: Pattern
    pattern_color: RGB
    cap_width: float  # relative to the fruit body's height
    cap_height: float  # relative to the cap's width
    stem_length: float  # relative to the fruit body's height
    stem_width: float  # relative to the cap's width
    bulb: bool
    ring: bool
    cluster: float  # probability of a second fruit body in the photo

    @property
    def name(self) -> str:
        return f"{self.genus.name} {self.epithet}"

    @property
    def scientific_name(self) -> str:
        return f"{self.name} {self.author}"

    @property
    def family(self) -> str:
        return self.genus.family

    @property
    def slug(self) -> str:
        return self.name.lower().replace(" ", "_")


_SHAPE_HEIGHT = {
    CapShape.CONVEX: (0.45, 0.6),
    CapShape.BELL: (0.7, 0.95),
    CapShape.CONICAL: (0.8, 1.1),
    CapShape.UMBONATE: (0.35, 0.5),
    CapShape.FLAT: (0.18, 0.28),
    CapShape.FUNNEL: (0.25, 0.35),
    CapShape.CUSHION: (0.5, 0.65),
}


class SpeciesCatalog:
    """`n_classes` species grouped into genera, genera into families; deterministic from `seed`."""

    def __init__(self, n_classes: int = 10, seed: int = 0) -> None:
        if not 1 <= n_classes <= MAX_CLASSES:
            raise ValueError(f"n_classes must be in 1..{MAX_CLASSES}, got {n_classes}")
        self.n_classes = n_classes
        self.seed = seed

    def __len__(self) -> int:
        return self.n_classes

    def __getitem__(self, index: int) -> Species:
        return self.species[index]

    @cached_property
    def species(self) -> tuple[Species, ...]:
        rng, _ = rngs("catalog", self.seed, self.n_classes)
        sizes = _genus_sizes(rng, self.n_classes)
        genera = _make_genera(rng, len(sizes))
        epithets = names.unique_names(names.epithet, rng, self.n_classes)
        out: list[Species] = []
        for genus, size in zip(genera, sizes, strict=True):
            for position in range(size):
                out.append(_make_species(rng, len(out), genus, epithets[len(out)], position, size))
        return tuple(out)

    @property
    def genera(self) -> tuple[Genus, ...]:
        return tuple(dict.fromkeys(s.genus for s in self.species))

    def by_name(self, name: str) -> Species:
        for sp in self.species:
            if sp.name == name:
                return sp
        raise KeyError(name)

    def render(self, class_index: int, seed: int, size: int | Size = 256) -> Image.Image:
        return render_species(self.species[class_index], seed, size)


def _genus_sizes(rng: random.Random, n_classes: int) -> list[int]:
    """Species per genus: 1-3 for small catalogs, up to 6 for large ones (harder: more look-alikes)."""
    upper = 3 if n_classes <= 12 else 6
    sizes: list[int] = []
    remaining = n_classes
    while remaining > 0:
        size = min(remaining, rng.randint(1, upper))
        sizes.append(size)
        remaining -= size
    return sizes


def _make_genera(rng: random.Random, count: int) -> list[Genus]:
    genus_names = names.unique_names(names.genus_name, rng, count)
    shapes = list(CapShape)
    # Spread genus hues evenly round the wheel (with jitter): more genera means closer palettes.
    offset = rng.random()
    hue_order = list(range(count))
    rng.shuffle(hue_order)
    genera: list[Genus] = []
    for i, name in enumerate(genus_names):
        hue = (offset + hue_order[i] / count + rng.uniform(-0.2, 0.2) / count) % 1.0
        # Mushrooms are mostly browns, tans and whites: squeeze most hues towards orange-brown.
        if rng.random() < 0.6:
            hue = 0.02 + hue * 0.13
        shape = shapes[i % len(shapes)] if count <= len(shapes) else rng.choice(shapes)
        genera.append(Genus(
            name=name,
            family=names.family_name(name),
            order=rng.choice(names.ORDERS),
            cap_shape=shape,
            hue=hue,
            saturation=rng.uniform(0.25, 0.9),
            value=rng.uniform(0.45, 0.95),
            pores=shape == CapShape.CUSHION or rng.random() < 0.15,
            ring=rng.random() < 0.4,
            habitat=rng.choice(list(Habitat)),
        ))
    _share_families(rng, genera)
    return genera


def _share_families(rng: random.Random, genera: list[Genus]) -> None:
    """Group genera into families: about one family per three genera, named after its first genus."""
    for i in range(len(genera)):
        if i > 0 and rng.random() < 0.65:
            j = rng.randrange(max(0, i - 3), i)
            genera[i] = _replace(genera[i], family=genera[j].family, order=genera[j].order)


def _replace(genus: Genus, **changes: str) -> Genus:
    fields = {**genus.__dict__, **changes}
    return Genus(**fields)


def _make_species(rng: random.Random, index: int, genus: Genus, epithet: str, position: int,
                  genus_size: int) -> Species:
    # Siblings are spread evenly along a hue and light-dark axis round their genus: each one tellable
    # from the others, all of them closer to each other than to another genus.
    t = (position - (genus_size - 1) / 2) / max(genus_size - 1, 1)  # -0.5 .. 0.5
    hue = genus.hue + 0.09 * t + rng.uniform(-0.01, 0.01)
    sat = genus.saturation * rng.uniform(0.85, 1.15)
    val = min(1.0, max(0.25, genus.value + 0.3 * t + rng.uniform(-0.03, 0.03)))
    cap = hsv(hue, sat, val)
    disc = scale_rgb(hsv(hue + rng.uniform(-0.03, 0.03), min(1.0, sat * 1.2), val), rng.uniform(0.55, 0.95))
    pale = hsv(hue + rng.uniform(-0.05, 0.05), rng.uniform(0.05, 0.3), rng.uniform(0.75, 0.97))
    underside = hsv(hue, rng.uniform(0.2, 0.7), rng.uniform(0.45, 0.85)) if genus.pores else pale
    stem = mix(pale, cap, rng.uniform(0.0, 0.6))
    pattern = rng.choices(list(Pattern), weights=(4, 2, 1.5, 1.5, 1.5))[0]
    pattern_color = (
        hsv(rng.random() * 0.1, rng.uniform(0.0, 0.2), rng.uniform(0.85, 1.0)) if pattern == Pattern.SPOTS
        else scale_rgb(cap, rng.uniform(0.45, 0.75))
    )
    lo, hi = _SHAPE_HEIGHT[genus.cap_shape]
    thick = genus.cap_shape == CapShape.CUSHION
    return Species(
        index=index,
        genus=genus,
        epithet=epithet,
        author=names.authorship(rng),
        cap_color=cap,
        disc_color=disc,
        underside_color=underside,
        stem_color=stem,
        pattern=pattern,
        pattern_color=pattern_color,
        cap_width=rng.uniform(0.55, 0.95) * (1.15 if thick else 1.0),
        cap_height=rng.uniform(lo, hi),
        stem_length=rng.uniform(0.35, 0.7),
        stem_width=rng.uniform(0.22, 0.4) if thick else rng.uniform(0.1, 0.22),
        bulb=thick or rng.random() < 0.3,
        ring=genus.ring and rng.random() < 0.85,
        cluster=rng.uniform(0.05, 0.5),
    )


# --- rendering -----------------------------------------------------------------------------------------

def render_species(species: Species, seed: int, size: int | Size = 256) -> Image.Image:
    """A photo of `species`, deterministic from (species, seed), as an RGB image of `size`."""
    width, height = as_size(size)
    scale = 2 if max(width, height) <= 160 else 1  # supersample small images: cheap anti-aliasing
    canvas_size = (width * scale, height * scale)
    rng, gen = rngs("species", species.genus.name, species.epithet, seed)
    habitat = species.genus.habitat if rng.random() < 0.6 else rng.choice(list(Habitat))
    image = render_background(habitat, rng, gen, canvas_size, defocus=scale * rng.uniform(1.2, 3.0))
    draw = ImageDraw.Draw(image, "RGBA")
    cw, ch = canvas_size
    body_height = ch * rng.uniform(0.45, 0.8)
    base_x = cw * rng.uniform(0.35, 0.65)
    base_y = ch * rng.uniform(0.78, 0.95)
    if rng.random() < species.cluster:
        # A smaller, further fruit body behind the main one.
        side = rng.choice((-1, 1))
        _fruit_body(image, species, rng, (base_x + side * body_height * rng.uniform(0.45, 0.8),
                                          base_y - ch * rng.uniform(0.02, 0.08)),
                    body_height * rng.uniform(0.45, 0.75), rng.uniform(-0.25, 0.25))
    _fruit_body(image, species, rng, (base_x, base_y), body_height, rng.gauss(0, 0.12))
    _foreground(draw, habitat, rng, canvas_size, base_y)
    if scale > 1:
        image = image.reduce(scale)
    return camera_effects(image, rng, gen, light=rng.uniform(0.1, 0.6), noise=rng.uniform(1.0, 7.0),
                          blur=rng.uniform(0.0, 1.0) if rng.random() < 0.3 else 0.0,
                          vignette=rng.uniform(0.0, 0.8))


def _fruit_body(image: Image.Image, sp: Species, rng: random.Random, base: Point, height: float,
                tilt: float) -> None:
    """Stem, underside and cap of one mushroom whose stem stands on `base`, leaning by `tilt` radians."""
    draw = ImageDraw.Draw(image, "RGBA")
    bx, by = base
    cap_w = height * sp.cap_width * rng.uniform(0.85, 1.15)
    cap_h = cap_w * sp.cap_height * rng.uniform(0.85, 1.15)
    stem_len = height * sp.stem_length * rng.uniform(0.85, 1.15)
    stem_w = cap_w * sp.stem_width * rng.uniform(0.85, 1.15)
    cap_col = jitter(sp.cap_color, rng, 10)
    light = rng.uniform(-1.0, 1.0)
    # Shadow under the stem.
    draw.ellipse((bx - cap_w * 0.5, by - stem_w * 0.3, bx + cap_w * 0.5, by + stem_w * 0.3), fill=(0, 0, 0, 70))
    top = (bx + math.sin(tilt) * stem_len, by - math.cos(tilt) * stem_len)
    _stem(image, sp, rng, (bx, by), top, stem_w, light)
    _cap(image, sp, rng, top, cap_w, cap_h, tilt, cap_col, light)


def _stem(image: Image.Image, sp: Species, rng: random.Random, base: Point, top: Point, width: float,
          light: float) -> None:
    bx, by = base
    tx, ty = top
    bend = rng.uniform(-0.15, 0.15) * width * 2
    left: list[Point] = []
    right: list[Point] = []
    steps = 8
    for i in range(steps + 1):
        t = i / steps
        x = bx + (tx - bx) * t + bend * math.sin(math.pi * t)
        y = by + (ty - by) * t
        half = width / 2 * (1.0 + 0.25 * (1 - t))
        if sp.bulb:
            half *= 1.0 + 0.7 * max(0.0, 1 - t * 4) ** 1.5
        left.append((x - half, y))
        right.append((x + half, y))
    polygon = left + right[::-1]
    shaded_polygon(image, polygon, sp.stem_color, light=light, gloss=0.0, axis="x")
    draw = ImageDraw.Draw(image, "RGBA")
    if sp.pattern in (Pattern.STREAKS, Pattern.SCALES):
        dark = (*scale_rgb(sp.stem_color, 0.7), 120)
        for i in range(1, steps, 2):
            (lx, ly), (rx, ry) = left[i], right[i]
            draw.line([(lx, ly), (rx, ry + width * 0.15)], fill=dark, width=max(1, int(width * 0.06)))
    if sp.ring:
        i = int(steps * 0.8)
        (lx, ly), (rx, _) = left[i], right[i]
        flare = width * 0.35
        skirt = [(lx - flare * 0.2, ly - width * 0.1), (rx + flare * 0.2, ly - width * 0.1),
                 (rx + flare, ly + width * 0.45), (lx - flare, ly + width * 0.45)]
        draw.polygon(skirt, fill=(*mix(sp.stem_color, (245, 240, 230), 0.6), 255))
        draw.line(skirt[2:], fill=(*scale_rgb(sp.stem_color, 0.75), 255), width=max(1, int(width * 0.06)))


def _cap_profile(shape: CapShape, u: float) -> float:
    """Height of the cap's top outline (0 at the margin, about 1 at its highest) at u in [-1, 1]."""
    a = abs(u)
    base = max(0.0, 1 - a * a)
    if shape == CapShape.CONVEX:
        return base ** 0.7
    if shape == CapShape.BELL:
        return max(0.0, 1 - a ** 2.6) ** 0.9
    if shape == CapShape.CONICAL:
        return max(0.0, 1 - a) ** 0.85
    if shape == CapShape.UMBONATE:
        return 0.7 * base ** 0.5 + 0.3 * math.exp(-a * a / 0.03)
    if shape == CapShape.FLAT:
        return max(0.0, 1 - a ** 4) ** 0.4
    if shape == CapShape.FUNNEL:
        # Depressed centre, raised margin.
        return 0.55 + 0.45 * (a ** 1.5) * (1 - max(0.0, a - 0.85) / 0.15 * 0.7)
    return base ** 0.35  # CUSHION


def _cap(image: Image.Image, sp: Species, rng: random.Random, top: Point, cap_w: float, cap_h: float,
         tilt: float, cap_col: RGB, light: float) -> None:
    cx, cy = top
    shape = sp.genus.cap_shape
    ca, sa = math.cos(tilt), math.sin(tilt)

    def at(x: float, y: float) -> Point:
        # Cap coordinates (x right, y up, origin at the stem top) to image coordinates, tilted.
        return (cx + x * ca + y * sa, cy + x * sa - y * ca)

    half = cap_w / 2
    rim_drop = cap_h * 0.12
    underside_depth = cap_w * (0.3 if shape == CapShape.FUNNEL else 0.12)
    steps = 24
    # Underside (gills or pores), seen slightly from below.
    under: list[Point] = [at(-half, -rim_drop)]
    for i in range(steps + 1):
        u = -1 + 2 * i / steps
        depth = underside_depth * (1 - abs(u)) if shape == CapShape.FUNNEL else underside_depth * math.sqrt(
            max(0.0, 1 - u * u))
        under.append(at(u * half * 0.96, -rim_drop * (1 - u * u) - depth * 0.6 - rim_drop * u * u))
    under.append(at(half, -rim_drop))
    draw = ImageDraw.Draw(image, "RGBA")
    draw.polygon(under, fill=(*sp.underside_color, 255))
    gill = (*scale_rgb(sp.underside_color, 0.7), 200)
    stem_top = at(0, -rim_drop - underside_depth * 0.7)
    if sp.genus.pores:
        for _ in range(int(30 + cap_w * 0.8)):
            u = rng.uniform(-0.9, 0.9)
            p = at(u * half * 0.9, -rim_drop - rng.uniform(0.1, 0.5) * underside_depth * math.sqrt(1 - u * u))
            r = max(0.6, cap_w * 0.008)
            draw.ellipse((p[0] - r, p[1] - r, p[0] + r, p[1] + r), fill=gill)
    else:
        for i in range(1, steps):
            u = -1 + 2 * i / steps
            p = under[i + 1]
            draw.line([at(u * half * 0.98, -rim_drop), p], fill=gill, width=max(1, int(cap_w * 0.008)))
            draw.line([p, stem_top], fill=(*gill[:3], 90), width=max(1, int(cap_w * 0.006)))
    # Cap body: the top outline, then back along a slightly curved margin.
    outline = [at(u * half, cap_h * _cap_profile(shape, u)) for u in (-1 + 2 * i / steps for i in range(steps + 1))]
    margin = [at(u * half, -rim_drop * (1 - 0.6 * u * u)) for u in (1 - 2 * i / steps for i in range(steps + 1))]
    apex = at(0, cap_h * _cap_profile(shape, 0.0))
    shaded_polygon(image, outline + margin, cap_col, light=light, gloss=rng.uniform(0.0, 0.5), axis="x",
                   disc=sp.disc_color, disc_center=apex, disc_radius=cap_w * rng.uniform(0.25, 0.45))
    _cap_pattern(draw, sp, rng, at, half, cap_h, shape)


def _cap_pattern(draw: ImageDraw.ImageDraw, sp: Species, rng: random.Random,
                 to_image: Callable[[float, float], Point], half: float, cap_h: float, shape: CapShape) -> None:
    color = sp.pattern_color
    if sp.pattern == Pattern.SPOTS:
        for _ in range(rng.randint(8, 18)):
            u = rng.uniform(-0.85, 0.85)
            v = rng.uniform(0.1, 0.9)
            x, y = to_image(u * half, cap_h * _cap_profile(shape, u) * v)
            r = half * rng.uniform(0.035, 0.08) * (1.2 - abs(u) * 0.5)
            draw.ellipse((x - r, y - r * 0.7, x + r, y + r * 0.7), fill=(*jitter(color, rng, 8), 235))
    elif sp.pattern == Pattern.ZONES:
        for v in (0.3, 0.55, 0.8):
            ring = [to_image(u * half * 0.97, cap_h * _cap_profile(shape, u) * v)
                    for u in (-0.95 + 1.9 * i / 16 for i in range(17))]
            draw.line(ring, fill=(*color, 150), width=max(1, int(half * 0.04)))
    elif sp.pattern == Pattern.STREAKS:
        apex = to_image(0, cap_h * _cap_profile(shape, 0.0) * 0.95)
        for i in range(14):
            u = -0.95 + 1.9 * i / 13
            draw.line([apex, to_image(u * half, 0)], fill=(*color, 110), width=max(1, int(half * 0.02)))
    elif sp.pattern == Pattern.SCALES:
        for _ in range(rng.randint(14, 28)):
            u = rng.gauss(0, 0.35)
            if abs(u) > 0.9:
                continue
            x, y = to_image(u * half, cap_h * _cap_profile(shape, u) * rng.uniform(0.3, 0.95))
            r = half * rng.uniform(0.025, 0.05)
            draw.polygon([(x - r, y - r * 0.5), (x + r, y - r * 0.5), (x, y + r)], fill=(*color, 210))


def _foreground(draw: ImageDraw.ImageDraw, habitat: Habitat, rng: random.Random, size: Size, ground: float) -> None:
    """Bits of grass or litter in front of the mushroom: partial occlusion, as in real photos."""
    width, height = size
    for _ in range(rng.randint(0, 6)):
        x = rng.uniform(0, width)
        y = ground + rng.uniform(0, height - ground) + height * 0.02
        if habitat == Habitat.GRASS:
            col = hsv(rng.uniform(0.2, 0.33), rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.75))
            blade = blade_polygon(x, y, height * rng.uniform(0.1, 0.35), width * rng.uniform(0.008, 0.02),
                                  rng.uniform(-0.1, 0.1) * height, rng.uniform(-0.4, 0.4))
            draw.polygon(blade, fill=(*col, 255))
        else:
            col = hsv(rng.uniform(0.03, 0.12), rng.uniform(0.4, 0.8), rng.uniform(0.25, 0.6))
            leaf = leaf_polygon(x, y, width * rng.uniform(0.06, 0.14), width * rng.uniform(0.025, 0.05),
                                rng.uniform(0, math.pi))
            draw.polygon(leaf, fill=(*col, 255))
