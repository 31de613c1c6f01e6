"""Review samples of one domain: a random, reproducible sample, as a contact sheet PNG or an HTML page
where a person labels each image relevant/irrelevant with one click."""

from __future__ import annotations

import html
import io
import json
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image, ImageDraw
from pydantic import BaseModel

from shared.schemas import HarvestStatus
from shared.storage import ObjectNotFound, ObjectStore

TILE = 160


class SampleImage(BaseModel):
    image_id: str
    observation_id: str
    url: str
    storage_key: str
    image_url: str
    irrelevant_score: float | None
    label: str | None


class DomainSample(BaseModel):
    dataset: str
    version: int
    domain: str
    seed: int
    available: int
    images: list[SampleImage]


def sample_rows(table: pa.Table, domain: str, n: int, seed: int) -> pa.Table:
    """A uniform random sample (without replacement) of ``domain``'s harvested rows; same seed, same sample."""
    mask = pc.and_(pc.and_(pc.equal(table.column("domain"), domain),
                           pc.equal(table.column("status"), HarvestStatus.ok.value)),
                   pc.is_valid(table.column("storage_key")))
    rows = table.filter(mask)
    if rows.num_rows <= n:
        return rows
    chosen = np.sort(np.random.default_rng(seed).choice(rows.num_rows, size=n, replace=False))
    return rows.take(pa.array(chosen))


def contact_sheet(store: ObjectStore, sample: DomainSample, columns: int = 6) -> bytes:
    def tile(item: SampleImage) -> Image.Image:
        image: Image.Image
        try:
            opened = Image.open(io.BytesIO(store.get_bytes(item.storage_key)))
            opened.draft("RGB", (TILE * 2, TILE * 2))
            image = opened.convert("RGB")
            image.thumbnail((TILE, TILE - 16))
        except (ObjectNotFound, OSError, ValueError):
            image = Image.new("RGB", (TILE, TILE - 16), (90, 0, 0))
        return image

    with ThreadPoolExecutor(8) as pool:
        tiles = list(pool.map(tile, sample.images))
    rows = max(1, math.ceil(len(tiles) / columns))
    sheet = Image.new("RGB", (columns * TILE, rows * TILE), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (item, image) in enumerate(zip(sample.images, tiles, strict=True)):
        x, y = (i % columns) * TILE, (i // columns) * TILE
        sheet.paste(image, (x + (TILE - image.width) // 2, y))
        flagged = item.label == "irrelevant" or (item.label is None and (item.irrelevant_score or 0) > 0.5)
        if flagged:  # a red frame: the filter or a person says "not a mushroom photo"
            left = x + (TILE - image.width) // 2
            draw.rectangle((left, y, left + image.width - 1, y + image.height - 1), outline=(220, 0, 0), width=3)
        score = "-" if item.irrelevant_score is None else f"{item.irrelevant_score:.2f}"
        caption = f"{i + 1} score {score}" + (f" {item.label}" if item.label else "")
        draw.text((x + 4, y + TILE - 14), caption, fill=(0, 0, 0))
    out = io.BytesIO()
    sheet.save(out, "PNG")
    return out.getvalue()


def review_page(sample: DomainSample) -> str:
    cards = []
    for item in sample.images:
        score = "–" if item.irrelevant_score is None else f"{item.irrelevant_score:.2f}"
        cards.append(
            f'<figure class="card {html.escape(item.label or "")}" data-image-id="{html.escape(item.image_id)}">'
            f'<img src="{html.escape(item.image_url)}" alt="{html.escape(item.image_id)}" loading="lazy">'
            f"<figcaption>score {score} · <a href=\"{html.escape(item.url)}\">source</a></figcaption>"
            '<button class="relevant" data-label="relevant">relevant</button>'
            '<button class="irrelevant" data-label="irrelevant">irrelevant</button></figure>'
        )
    config = json.dumps({"dataset": sample.dataset, "version": sample.version})
    title = html.escape(f"{sample.domain} — {sample.dataset} v{sample.version}, seed {sample.seed}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Review {title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; }}
.card {{ margin: 0; padding: 6px; border: 3px solid #ccc; border-radius: 6px; }}
.card img {{ width: 100%; height: 180px; object-fit: contain; background: #eee; }}
.card.relevant {{ border-color: #2a2; }} .card.irrelevant {{ border-color: #c22; }}
.card button {{ margin: 4px 4px 0 0; }} #status {{ color: #555; }}
</style></head><body>
<h1>Review {title}</h1>
<p>{sample.available} harvested images on this domain; {len(sample.images)} shown.
Click <b>relevant</b> for a photo of a mushroom, <b>irrelevant</b> for sheets, envelopes, labels, slides.</p>
<p><label>API token <input id="token" type="password" size="40"></label> <span id="status"></span></p>
<div class="grid">{"".join(cards)}</div>
<script>
const config = {config};
const tokenInput = document.getElementById("token");
tokenInput.value = localStorage.getItem("sporeprint-token") || "";
tokenInput.addEventListener("change", () => localStorage.setItem("sporeprint-token", tokenInput.value));
document.querySelectorAll(".card button").forEach(button => button.addEventListener("click", async () => {{
  const card = button.closest(".card");
  const label = button.dataset.label;
  const response = await fetch("/labels", {{
    method: "POST",
    headers: {{"Content-Type": "application/json", "Authorization": "Bearer " + tokenInput.value}},
    body: JSON.stringify({{dataset: config.dataset, version: config.version,
                          labels: [{{image_id: card.dataset.imageId, label: label}}]}}),
  }});
  const status = document.getElementById("status");
  if (response.ok) {{
    card.classList.remove("relevant", "irrelevant");
    card.classList.add(label);
    status.textContent = "saved: " + label;
  }} else {{
    status.textContent = "not saved: " + response.status + " " + (await response.text());
  }}
}}));
</script></body></html>
"""
