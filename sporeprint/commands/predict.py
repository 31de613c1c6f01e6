"""``sporeprint predict``: what the served model says about photos (files or URLs)."""

from __future__ import annotations

from pathlib import Path

import click

from sporeprint.commands.common import client_of, echo_json, service_options

MAX_PHOTO_BYTES = 20 * 1024 * 1024


@click.command("predict")
@click.argument("photos", nargs=-1, type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--photo-url", "urls", multiple=True, help="a photo on the web (repeat the option)")
@click.option("--top-k", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the answers as JSON")
@service_options("inference")
def predict(photos: tuple[Path, ...], urls: tuple[str, ...], top_k: int, as_json: bool, url: str | None,
            token: str | None) -> None:
    """Identify the mushroom in each photo: the verdict in words and the top-k species."""
    if not photos and not urls:
        raise click.UsageError("give at least one photo file or --photo-url")
    answers = []
    with client_of("inference", url, token) as inference:
        for photo in photos:
            if photo.stat().st_size > MAX_PHOTO_BYTES:
                raise click.ClickException(f"{photo}: larger than {MAX_PHOTO_BYTES // 2**20} MB")
            answers.append((str(photo), inference.predict(photo.read_bytes(), top_k=top_k)))
        for photo_url in urls:
            answers.append((photo_url, inference.predict(url=photo_url, top_k=top_k)))
    if as_json:
        echo_json([{"photo": name, **answer.model_dump(mode="json")} for name, answer in answers])
        return
    for name, answer in answers:
        click.echo(f"{name}: {answer.verdict.replace('_', ' ')} - {answer.message}")
        for guess in answer.predictions:
            bar = "#" * round(20 * guess.probability)
            click.echo(f"  {guess.probability:6.1%} {bar:<20} {guess.label}")
    click.echo(answers[-1][1].safety_notice)
