"""A labelled contact sheet of species photos and irrelevant images, for looking at the fixtures."""

from __future__ import annotations

from PIL import Image, ImageDraw

from fixtureweb.irrelevant import IrrelevantKind, render_irrelevant
from fixtureweb.species import SpeciesCatalog
from fixtureweb.stationery import font

_LABEL_WIDTH = 220
_GAP = 4


def contact_sheet(n_classes: int = 10, per_class: int = 6, per_kind: int = 6, tile: int = 128,
                  seed: int = 0, max_rows: int = 20) -> Image.Image:
    """One row per species (up to `max_rows`), then one row per irrelevant kind, each labelled."""
    catalog = SpeciesCatalog(n_classes, seed)
    species = catalog.species[:max_rows]
    columns = max(per_class, per_kind)
    rows = len(species) + len(IrrelevantKind)
    width = _LABEL_WIDTH + columns * (tile + _GAP)
    height = rows * (tile + _GAP) + 30
    sheet = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 6), f"fixtureweb contact sheet: {n_classes} species (seed {seed}), irrelevant kinds",
              fill=(240, 240, 240), font=font(14))
    y = 30
    for sp in species:
        draw.text((8, y + 8), f"{sp.index}: {sp.name}", fill=(250, 250, 250), font=font(13))
        draw.text((8, y + 28), f"{sp.family}", fill=(180, 180, 190), font=font(11))
        draw.text((8, y + 44), f"{sp.genus.cap_shape}, {sp.pattern}", fill=(180, 180, 190), font=font(11))
        draw.text((8, y + 60), "pores" if sp.genus.pores else "gills", fill=(180, 180, 190), font=font(11))
        for k in range(per_class):
            sheet.paste(catalog.render(sp.index, k, tile), (_LABEL_WIDTH + k * (tile + _GAP), y))
        y += tile + _GAP
    for kind in IrrelevantKind:
        draw.text((8, y + 8), f"irrelevant: {kind.value}", fill=(255, 200, 120), font=font(13))
        for k in range(per_kind):
            sheet.paste(render_irrelevant(kind, k, tile), (_LABEL_WIDTH + k * (tile + _GAP), y))
        y += tile + _GAP
    return sheet
