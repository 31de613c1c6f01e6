"""``sporeprint``: run the local stack, import sources, inspect manifests.

Commands that talk to storage read the SPOREPRINT_* settings; after ``sporeprint stack up``
they default to the local stack (its address and keys are in ``.stack/stack.env``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from shared.logs import configure_logging
from shared.stack import LocalStack

DEFAULT_STACK_DIR = Path(os.environ.get("SPOREPRINT_STACK_DIR", ".stack"))


def _load_stack_env(stack_dir: Path) -> None:
    """Point settings at the local stack unless the environment already says otherwise."""
    state = LocalStack(stack_dir).load()
    if state is None:
        return
    for key, value in state.env().items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("SPOREPRINT_ENVIRONMENT", "development")


def _manifests():  # noqa: ANN202 - lazy imports keep `sporeprint --help` fast
    from shared.manifests import ManifestStore
    from shared.settings import Settings
    from shared.storage import ObjectStore

    store = ObjectStore.from_settings(Settings())
    store.ensure_bucket()
    return ManifestStore(store)


@click.group()
@click.option("--log-level", default="WARNING", show_default=True)
@click.option("--stack-dir", type=click.Path(path_type=Path), default=DEFAULT_STACK_DIR, show_default=True)
@click.pass_context
def main(ctx: click.Context, log_level: str, stack_dir: Path) -> None:
    """sporeprint: public biodiversity photos in, a mushroom classifier out."""
    configure_logging(log_level)
    ctx.obj = {"stack_dir": stack_dir}
    _load_stack_env(stack_dir)


@main.group()
def stack() -> None:
    """The local stack without Docker: a real S3 server (SeaweedFS) and Redis."""


@stack.command("up")
@click.option("--s3-port", type=int, default=0, help="0 picks a free port")
@click.option("--redis-port", type=int, default=0, help="0 picks a free port")
@click.pass_context
def stack_up(ctx: click.Context, s3_port: int, redis_port: int) -> None:
    """Start the S3 server and Redis, wait until both answer, record their PIDs."""
    local = LocalStack(ctx.obj["stack_dir"])
    state = local.up(s3_port=s3_port, redis_port=redis_port)
    env_file = local.dir / "stack.env"
    env_file.write_text("".join(f"export {key}={value}\n" for key, value in state.env().items()))
    click.echo(f"stack up: S3 http://{state.s3_endpoint} (bucket {state.bucket}), Redis {state.redis_url}")
    click.echo(f"settings for other shells: source {env_file}")


@stack.command("down")
@click.option("--clean", is_flag=True, help="also delete the stack's data directory")
@click.pass_context
def stack_down(ctx: click.Context, clean: bool) -> None:
    """Stop exactly the processes `stack up` started."""
    LocalStack(ctx.obj["stack_dir"]).down(clean=clean)
    click.echo("stack down" + (" (data deleted)" if clean else ""))


@stack.command("status")
@click.pass_context
def stack_status(ctx: click.Context) -> None:
    """Show whether the stack runs and where."""
    status = LocalStack(ctx.obj["stack_dir"]).status()
    click.echo(json.dumps(status, indent=2))
    sys.exit(0 if status["running"] else 1)


@main.command("import")
@click.argument("source", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--dataset", required=True, help="dataset name (a-z 0-9 . _ -)")
@click.option("--species", default=None, help="taxon for a bare multimedia.txt, which has none")
@click.option("--family", default=None, help="family for --species")
def import_command(source: Path, dataset: str, species: str | None, family: str | None) -> None:
    """Import a GBIF zip, a GBIF multimedia.txt or a CSV list into a new manifest version."""
    from services.downloader.importers import ImportFailed, Taxon, import_source
    from shared.manifests import summary

    manifests = _manifests()
    taxon = Taxon(species, family=family) if species else None
    try:
        info = import_source(source, dataset, manifests, taxon)
    except ImportFailed as exc:
        raise click.ClickException(str(exc)) from None
    table = manifests.read(dataset, info.version)
    facts = summary(table)
    click.echo(
        f"imported {source.name} -> {dataset} v{info.version}: {info.rows} rows, "
        f"{facts['observations']} observations, {facts['species']} species, {facts['domains']} domains "
        f"({info.stats.get('duplicates_collapsed', 0)} duplicates collapsed, {info.stats.get('skipped', 0)} skipped)"
    )
    click.echo(json.dumps({"info": info.model_dump(mode="json"), "summary": facts}, indent=2))


@main.group()
def manifests() -> None:
    """Inspect manifest versions."""


@manifests.command("list")
@click.argument("dataset", required=False)
def manifests_list(dataset: str | None) -> None:
    """Datasets, or the versions of one dataset with their lineage."""
    store = _manifests()
    if dataset is None:
        for name in store.datasets():
            click.echo(f"{name}\tlatest v{store.latest_version(name)}")
        return
    for info in store.versions(dataset):
        parent = f"v{info.parent}" if info.parent else "-"
        click.echo(
            f"v{info.version}\t{info.operation.value}\tparent {parent}\t{info.rows} rows"
            f"\t{info.created_at:%Y-%m-%d %H:%M}"
        )


@manifests.command("show")
@click.argument("dataset")
@click.option("--version", type=int, default=None, help="default: latest")
def manifests_show(dataset: str, version: int | None) -> None:
    """A version's info and summary (rows, classes, domains, licences)."""
    from shared.manifests import summary

    store = _manifests()
    info = store.info(dataset, version)
    click.echo(json.dumps({"info": info.model_dump(mode="json"),
                           "summary": summary(store.read(dataset, info.version))}, indent=2))


@main.command("demo")
@click.option("--ci", is_flag=True, help="the reduced run CI uses (fewer photos, classes and epochs)")
@click.option("--stop/--keep", default=False, show_default=True, help="stop everything when done")
@click.option("--gbif-sample", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="also import this real GBIF multimedia.txt (Psilocybe semilanceata) and summarise it")
@click.pass_context
def demo_command(ctx: click.Context, ci: bool, stop: bool, gbif_sample: Path | None) -> None:
    """The whole pipeline on the local stack: import, harvest, curate, train, promote, predict."""
    from sporeprint.demo import CI_SIZE, DemoFailed, DemoSize, down, run_demo

    stack_dir: Path = ctx.obj["stack_dir"]
    try:
        run_demo(stack_dir, CI_SIZE if ci else DemoSize(), click.echo, gbif_sample)
    except DemoFailed as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if stop:
            down(stack_dir)
            click.echo("stopped every process the demo started")


@main.command("down")
@click.option("--clean", is_flag=True, help="also delete the local stack's data")
@click.pass_context
def down_command(ctx: click.Context, clean: bool) -> None:
    """Stop what `sporeprint demo` and `sporeprint stack up` started (by PID)."""
    from sporeprint.demo import down

    stopped = down(ctx.obj["stack_dir"], clean=clean)
    click.echo(f"stopped {', '.join(stopped) or 'no demo processes'} and the local stack")


@main.group()
def schema() -> None:
    """The shared contract as JSON Schema."""


@schema.command("export")
def schema_export() -> None:
    """Write shared/jsonschema/*.json from the pydantic models."""
    from shared.contract import export_schemas

    for path in export_schemas():
        click.echo(str(path))


def _mount_optional_groups() -> None:
    """Command groups of packages that may be absent from a slim image."""
    from importlib import import_module

    for module_name, attribute, name in [
        ("fixtureweb.cli", "fixtures_cli", "fixtures"),
        ("services.downloader.cli", "harvest_cli", "harvest"),
    ]:
        try:
            group = getattr(import_module(module_name), attribute)
        except (ImportError, AttributeError):
            continue
        main.add_command(group, name)


_mount_optional_groups()

if __name__ == "__main__":
    main()
