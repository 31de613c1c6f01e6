"""`sporeprint fixtures ...`: build fixture files, serve the fixture web, draw a contact sheet."""

from __future__ import annotations

import asyncio
import csv
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from fixtureweb.config import WebConfig, preset
from fixtureweb.encoding import ImageFormat, encode
from fixtureweb.gbif_export import ExportConfig, build_export
from fixtureweb.irrelevant import IrrelevantKind, render_irrelevant
from fixtureweb.sheet import contact_sheet
from fixtureweb.species import SpeciesCatalog
from fixtureweb.web import FixtureWebInfo, serve_forever

fixtures_cli = click.Group("fixtures", help="The fixture web: synthetic species, irrelevant images, a GBIF export.")


def _web_config(config: Path | None, classes: int, domains: int, herbarium: int, seed: int,
                no_faults: bool) -> WebConfig:
    if config is not None:
        return WebConfig.load(config)
    return preset(domains, herbarium, n_classes=classes, seed=seed, faults=not no_faults)


_web_options = [
    click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                 help="A WebConfig JSON file (overrides the preset options)."),
    click.option("--classes", default=10, show_default=True, type=click.IntRange(1, 100)),
    click.option("--domains", default=20, show_default=True, type=click.IntRange(1)),
    click.option("--herbarium", default=3, show_default=True, type=click.IntRange(0),
                 help="How many of the domains are herbarium-like (~80% irrelevant images)."),
    click.option("--seed", default=0, show_default=True),
    click.option("--no-faults", is_flag=True, help="No random per-domain faults."),
]


F = TypeVar("F", bound=Callable[..., Any])


def web_options(func: F) -> F:
    for option in reversed(_web_options):
        func = option(func)
    return func


@fixtures_cli.command("build")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@web_options
@click.option("--photos", default=2000, show_default=True, help="Photos (multimedia rows) in the GBIF export.")
@click.option("--port", default=8765, show_default=True, help="Port the export's URLs point at (see `serve`).")
@click.option("--url-style", type=click.Choice(["host", "path"]), default="host", show_default=True)
@click.option("--per-class", default=20, show_default=True, help="Species photos written per class.")
@click.option("--per-kind", default=10, show_default=True, help="Irrelevant images written per kind.")
@click.option("--size", default=256, show_default=True, help="Longest side of written images.")
def build(out_dir: Path, config: Path | None, classes: int, domains: int, herbarium: int, seed: int,
          no_faults: bool, photos: int, port: int, url_style: str, per_class: int, per_kind: int, size: int) -> None:
    """Write species photos, irrelevant images, web.json and a GBIF export (+ truth, CSV) to OUT_DIR."""
    web = _web_config(config, classes, domains, herbarium, seed, no_faults)
    out_dir.mkdir(parents=True, exist_ok=True)
    web.dump(out_dir / "web.json")
    catalog = SpeciesCatalog(web.n_classes, web.seed)
    with click.progressbar(catalog.species, label="species photos") as species:
        for sp in species:
            folder = out_dir / "species" / sp.slug
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                (folder / f"{k:04d}.jpg").write_bytes(encode(catalog.render(sp.index, k, size), ImageFormat.JPEG))
    for kind in IrrelevantKind:
        folder = out_dir / "irrelevant" / kind.value
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_kind):
            (folder / f"{k:04d}.jpg").write_bytes(encode(render_irrelevant(kind, k, size), ImageFormat.JPEG))
    result = build_export(web, out_dir / "gbif",
                          ExportConfig(total_photos=photos, seed=seed, url_style=url_style, port=port))
    with (out_dir / "species.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("class_index", "species", "genus", "family", "order"))
        for sp in catalog.species:
            writer.writerow((sp.index, sp.name, sp.genus.name, sp.family, sp.genus.order))
    click.echo(f"wrote {out_dir}: {result.observations} observations, {result.photos} photos "
               f"({result.zip_path.name}, {result.truth_path.name}, {result.csv_path.name})")


@fixtures_cli.command("serve")
@web_options
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, help="0 picks a free port.")
@click.option("--warm", "warm_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Pre-render every URL of this CSV (url column first), e.g. the build's images.csv.")
@click.option("-v", "--verbose", is_flag=True)
def serve(config: Path | None, classes: int, domains: int, herbarium: int, seed: int, no_faults: bool,
          host: str, port: int, warm_csv: Path | None, verbose: bool) -> None:
    """Serve the fixture web in the foreground until interrupted."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    web = _web_config(config, classes, domains, herbarium, seed, no_faults)
    urls: list[str] = []
    if warm_csv is not None:
        with warm_csv.open() as f:
            urls = [row[0] for row in csv.reader(f)][1:]
        click.echo(f"pre-rendering {len(urls)} URLs ...")

    def ready(info: FixtureWebInfo) -> None:
        click.echo(f"fixture web on {info.base_url} ({len(info.domains)} domains); e.g.")
        click.echo(f"  {info.url(info.domains[0], '/species/0/1.jpg', style='path')}")
        click.echo(f"  {info.url(info.domains[0], '/species/0/1.jpg', style='host')}")
        click.echo(f"  stats: {info.stats_url}", nl=True)

    try:
        asyncio.run(serve_forever(web, host, port, ready, urls))
    except KeyboardInterrupt:
        click.echo("stopped")


@fixtures_cli.command("sheet")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path), default=Path("contact_sheet.png"))
@click.option("--classes", default=10, show_default=True, type=click.IntRange(1, 100))
@click.option("--per-class", default=6, show_default=True)
@click.option("--per-kind", default=6, show_default=True)
@click.option("--tile", default=128, show_default=True, help="Tile size in pixels.")
@click.option("--seed", default=0, show_default=True)
def sheet(out: Path, classes: int, per_class: int, per_kind: int, tile: int, seed: int) -> None:
    """Draw a labelled contact sheet (PNG) of species photos and irrelevant images."""
    contact_sheet(classes, per_class, per_kind, tile, seed).save(out)
    click.echo(f"wrote {out}")
