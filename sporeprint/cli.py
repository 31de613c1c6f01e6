"""``sporeprint``: run the local stack, import sources, inspect manifests, harvest through the downloader.

Commands that talk to storage or a service read the SPOREPRINT_* settings; after ``sporeprint stack up``
they default to the local stack (its address and keys are in ``.stack/stack.env``). A service that cannot be
reached or refuses a request ends the command with one line saying so and exit code 1.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from shared.clients import ServiceError
from shared.logs import configure_logging
from sporeprint.commands.common import client_of, follow, service_options
from sporeprint.stack import LocalStack

if TYPE_CHECKING:
    from shared.clients.downloader import DownloaderClient


DEFAULT_STACK_DIR = Path(os.environ.get("SPOREPRINT_STACK_DIR", ".stack"))


def _load_stack_env(stack_dir: Path) -> None:
    """Point settings at the local stack unless the environment already says otherwise."""
    state = LocalStack(stack_dir).load()
    if state is None:
        return
    for key, value in state.env().items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("SPOREPRINT_ENVIRONMENT", "development")


def _settings():  # noqa: ANN202 - lazy import
    from shared.settings import Settings

    return Settings()


def _manifests():  # noqa: ANN202 - lazy imports keep `sporeprint --help` fast
    from shared.manifests import ManifestStore
    from shared.storage import ObjectStore

    store = ObjectStore.from_settings(_settings())
    store.ensure_bucket()
    return ManifestStore(store)


class _Cli(click.Group):
    """The command group whose commands end a failure to reach a service, S3 or Redis, or a settings mistake,
    with one line (exit code 1), not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ServiceError as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            line = unreachable_line(exc)
            if line is None:
                raise
            raise click.ClickException(line) from None


def _setting(name: str) -> str:
    try:
        return str(getattr(_settings(), name))
    except Exception:  # noqa: BLE001 - only for the message: the settings themselves may be what is wrong
        return "?"


def unreachable_line(exc: BaseException) -> str | None:
    """One line for the failures a user fixes in their settings (S3 or Redis unreachable, a bad settings file or
    value), or ``None`` for anything else (a bug, which keeps its traceback)."""
    from minio.error import S3Error
    from pydantic import ValidationError
    from redis.exceptions import AuthenticationError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError as RedisResponseError
    from urllib3.exceptions import HTTPError as Urllib3Error

    from shared.settings import ENV_FILE_VARIABLE, EnvFileMissing
    from shared.storage import ObjectNotFound, StorageError

    where = f" ({ENV_FILE_VARIABLE}={os.environ[ENV_FILE_VARIABLE]})" if os.environ.get(ENV_FILE_VARIABLE) else ""
    if isinstance(exc, EnvFileMissing):
        return str(exc)
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"settings{where}: {first['msg']}"
    if isinstance(exc, StorageError) and not isinstance(exc, ObjectNotFound):  # e.g. NoCredentials
        return f"S3{where}: {exc}"
    if isinstance(exc, Urllib3Error | S3Error):
        endpoint = _setting("s3_endpoint")
        reason = getattr(exc, "reason", None) or getattr(exc, "code", None) or exc
        return f"cannot use S3 at {endpoint}{where}: {reason}; check SPOREPRINT_S3_ENDPOINT and the keys"
    if isinstance(exc, AuthenticationError | RedisConnectionError | RedisResponseError):
        from shared.queue import redacted_url

        url = redacted_url(_setting("redis_url"))
        return f"cannot use Redis at {url}{where}: {exc}; check SPOREPRINT_REDIS_URL and its password"
    return None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sporeprint")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


@click.group(cls=_Cli)
@click.version_option(_version(), "--version", prog_name="sporeprint", message="%(prog)s %(version)s")
@click.option("--log-level", default="WARNING", show_default=True)
@click.option("--stack-dir", type=click.Path(path_type=Path), default=DEFAULT_STACK_DIR, show_default=True)
@click.option("--env-file", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              envvar="SPOREPRINT_ENV_FILE", help="read SPOREPRINT_* settings from this KEY=value file too "
              "(none is read unless named; the environment wins over it)")
@click.pass_context
def main(ctx: click.Context, log_level: str, stack_dir: Path, env_file: Path | None) -> None:
    """sporeprint: public biodiversity photos in, a mushroom classifier out."""
    configure_logging(log_level, "text")  # a person reads the CLI's lines, piped or not
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # its retries end in the one line below
        logging.getLogger("urllib3").setLevel(logging.ERROR)
    ctx.obj = {"stack_dir": stack_dir}
    if env_file is not None:  # a named settings file decides where things are; the local stack is not assumed
        os.environ["SPOREPRINT_ENV_FILE"] = str(env_file)
    else:
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
    env_file.touch(mode=0o600)
    env_file.chmod(0o600)  # it holds the S3 keys and the Redis password
    env_file.write_text("".join(f"export {key}={value}\n" for key, value in state.env().items()))
    click.echo(f"stack up: S3 http://{state.s3_endpoint} (bucket {state.bucket}), Redis {state.redis_address}")
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
@click.option("--group-observations", type=click.Choice(["photographer_date_place", "none"]),
              default="photographer_date_place", show_default=True,
              help="CSV rows without observation_id: one observation per photographer + day + place + species "
                   "(burst shots stay in one split), or each photo its own")
def import_command(source: Path, dataset: str, species: str | None, family: str | None,
                   group_observations: str) -> None:
    """Import a GBIF zip, a GBIF multimedia.txt or a CSV list into a new manifest version."""
    from services.downloader.importers import ImportFailed, ObservationGrouping, Taxon, import_source
    from shared.manifests import summary

    manifests = _manifests()
    taxon = Taxon(species, family=family) if species else None
    try:
        info = import_source(source, dataset, manifests, taxon, ObservationGrouping(group_observations))
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


_downloader_options = service_options("downloader")


def _downloader(url: str | None, token: str | None) -> DownloaderClient:
    client: DownloaderClient = client_of("downloader", url, token)
    return client


@main.group()
def harvest() -> None:
    """Harvest a manifest's images into object storage (through the downloader API)."""


@harvest.command("start")
@click.argument("dataset")
@click.option("--version", "version", type=int, default=None, help="manifest version (default: latest)")
@click.option("--max-per-class", type=int, default=None, help="stop at this many stored images per species")
@click.option("--classes", multiple=True, help="only these species (repeat the option)")
@click.option("--max-side", type=int, default=512, show_default=True, help="resize: longest side in pixels")
@click.option("--keep-originals", is_flag=True, help="do not resize (still RGB JPEG)")
@click.option("--quality", type=int, default=90, show_default=True, help="JPEG quality of re-encoded images")
@click.option("--min-width", type=int, default=0)
@click.option("--min-height", type=int, default=0)
@click.option("--concurrency", type=int, default=64, show_default=True, help="requests in flight, all domains")
@click.option("--per-domain", type=int, default=8, show_default=True, help="requests in flight per domain")
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True, help="per request, seconds")
@click.option("--retries", type=int, default=3, show_default=True, help="retries of transient errors")
@click.option("--wait/--no-wait", default=True, show_default=True, help="show a progress bar until it ends")
@_downloader_options
def harvest_start(dataset: str, version: int | None, max_per_class: int | None, classes: tuple[str, ...],
                  max_side: int, keep_originals: bool, quality: int, min_width: int, min_height: int,
                  concurrency: int, per_domain: int, timeout_s: float, retries: int, wait: bool, url: str | None,
                  token: str | None) -> None:
    """Start harvesting DATASET and show its progress (--no-wait: print its id)."""
    options: dict[str, Any] = {
        "resize": {"max_side": None if keep_originals else max_side, "quality": quality},
        "min_width": min_width, "min_height": min_height, "concurrency": concurrency, "per_domain": per_domain,
        "total_timeout_s": timeout_s, "retries": retries,
    }
    if max_per_class is not None:
        options["max_per_class"] = max_per_class
    if classes:
        options["classes"] = list(classes)
    with _downloader(url, token) as downloader:
        started = downloader.harvest(dataset, version, options)
        click.echo(f"harvest {started.id}: {dataset} v{started.version} ({started.state})", err=True)
        if wait:
            _watch(downloader, started.id, 1.0)
        else:
            click.echo(started.id)


@harvest.command("watch")
@click.argument("harvest_id")
@click.option("--interval", type=float, default=1.0, show_default=True, help="seconds between polls")
@_downloader_options
def harvest_watch(harvest_id: str, interval: float, url: str | None, token: str | None) -> None:
    """Show a harvest's progress bar until it ends."""
    with _downloader(url, token) as downloader:
        _watch(downloader, harvest_id, interval)


@harvest.command("status")
@click.argument("harvest_id")
@_downloader_options
def harvest_status(harvest_id: str, url: str | None, token: str | None) -> None:
    """Print a harvest's state and counts as JSON."""
    with _downloader(url, token) as downloader:
        click.echo(downloader.harvest_status(harvest_id).model_dump_json(indent=2))


@harvest.command("cancel")
@click.argument("harvest_id")
@_downloader_options
def harvest_cancel(harvest_id: str, url: str | None, token: str | None) -> None:
    """Cancel a harvest (what it stored so far stays stored)."""
    with _downloader(url, token) as downloader:
        click.echo(f"harvest {harvest_id}: {downloader.cancel_harvest(harvest_id).state}")


@harvest.command("resume")
@click.argument("harvest_id")
@click.option("--wait/--no-wait", default=True, show_default=True, help="show a progress bar until it ends")
@_downloader_options
def harvest_resume(harvest_id: str, wait: bool, url: str | None, token: str | None) -> None:
    """Resume an interrupted harvest; images already stored are not fetched again."""
    with _downloader(url, token) as downloader:
        click.echo(f"harvest {harvest_id}: {downloader.resume_harvest(harvest_id).state}", err=True)
        if wait:
            _watch(downloader, harvest_id, 1.0)


def _watch(downloader: DownloaderClient, harvest_id: str, interval: float) -> None:
    from shared.queue import JobState

    def images(view: Any) -> tuple[int, int, dict[str, Any]]:
        progress = view.progress
        return progress.done, progress.total, {
            "state": view.state.value, "ok": progress.ok, "failed": progress.failed, "skipped": progress.skipped,
            "eta": progress.eta_s}

    view = follow(lambda: downloader.harvest_status(harvest_id), desc=harvest_id, unit="img", interval=interval,
                  progress=images)
    progress = view.progress
    click.echo(f"harvest {harvest_id} {view.state}: ok {progress.ok}, failed {progress.failed} "
               f"{progress.failed_by_reason}, skipped {progress.skipped} {progress.skipped_by_reason}")
    if view.manifest_version:
        click.echo(f"wrote {view.dataset} v{view.manifest_version}")
    if view.state is JobState.failed:
        raise click.ClickException(view.error or "the harvest failed")


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


def _mount_fixture_commands() -> None:
    """``sporeprint fixtures ...`` where the fixture web (a dev package, absent from the images) is installed."""
    try:
        from fixtureweb.cli import fixtures_cli
    except ImportError:
        return
    main.add_command(fixtures_cli, "fixtures")


_mount_fixture_commands()

if __name__ == "__main__":
    main()


def _add_api_commands() -> None:
    from sporeprint.commands.curate import blacklist, curate
    from sporeprint.commands.models import models
    from sporeprint.commands.predict import predict
    from sporeprint.commands.train import train

    for command in (train, models, predict, curate, blacklist):
        main.add_command(command)


_add_api_commands()
