"""``sporeprint models``: the registry's models, one model's card and figures, and promotion."""

from __future__ import annotations

from pathlib import Path

import click

from sporeprint.commands.common import client_of, echo_json, percent, service_options


@click.group()
def models() -> None:
    """The model registry (through the trainer API)."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="print the list as JSON")
@service_options("trainer")
def list_models(as_json: bool, url: str | None, token: str | None) -> None:
    """Every model, newest first; * marks the promoted one."""
    with client_of("trainer", url, token) as trainer:
        found = sorted(trainer.models(), key=lambda model: model.created_at, reverse=True)
    if as_json:
        echo_json([model.model_dump(mode="json") for model in found])
        return
    if not found:
        click.echo("no models yet (sporeprint train submit SPEC)")
    for model in found:
        mark = "*" if model.promoted else " "
        where = f"{model.dataset} v{model.manifest_version}" if model.dataset else ""
        click.echo(f"{mark} {model.model_id}  {model.status.value:<9} top-1 {percent(model.metrics.get('top1')):>6}  "
                   f"{model.backbone or '':<16} {where}  {model.created_at:%Y-%m-%d %H:%M}".rstrip())


@models.command("show")
@click.argument("model_id")
@service_options("trainer")
def show(model_id: str, url: str | None, token: str | None) -> None:
    """A model's card (lineage: job spec, dataset version, classes), its figures and artifacts, as JSON."""
    with client_of("trainer", url, token) as trainer:
        echo_json(trainer.model(model_id).model_dump(mode="json"))


@models.command("promote")
@click.argument("model_id")
@service_options("trainer")
def promote(model_id: str, url: str | None, token: str | None) -> None:
    """Make MODEL_ID the one /predict serves (only a complete model qualifies)."""
    with client_of("trainer", url, token) as trainer:
        pointer = trainer.promote(model_id)
    click.echo(f"promoted {pointer.model_id}")


@models.command("download")
@click.argument("model_id")
@click.argument("names", nargs=-1)
@click.option("--to", "target", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="directory to write into (default: ./MODEL_ID)")
@service_options("trainer")
def download(model_id: str, names: tuple[str, ...], target: Path | None, url: str | None,
             token: str | None) -> None:
    """Download a model's artifacts (all, or the NAMES given: model.keras, labels.json, curves.png, ...)."""
    target = target or Path(model_id)
    with client_of("trainer", url, token) as trainer:
        available = sorted(trainer.model(model_id).artifact_urls)
        unknown = [name for name in names if name not in available]
        if unknown:
            raise click.ClickException(f"model {model_id} has no artifact {', '.join(unknown)} "
                                       f"(it has: {', '.join(available)})")
        for name in names or available:
            path = (target / name).resolve()
            if not path.is_relative_to(target.resolve()):  # a name is a key, never a way out of the target
                raise click.ClickException(f"artifact name {name!r} points outside {target}")
            path.parent.mkdir(parents=True, exist_ok=True)
            data = trainer.artifact(model_id, name)
            path.write_bytes(data)
            click.echo(f"{path} ({len(data):,} bytes)")
