"""``sporeprint curate``: domain scores, a curation run (filter, duplicates, a curated manifest version)."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from sporeprint.commands.common import client_of, echo_json, service_options


@click.group()
def curate() -> None:
    """Curation (through the curator API)."""


@curate.command("start")
@click.argument("dataset")
@click.option("--version", "version", type=int, default=None, help="manifest version (default: latest)")
@click.option("--follow/--no-follow", default=True, show_default=True, help="show its progress until it ends")
@click.option("--interval", type=float, default=1.0, show_default=True)
@service_options("curator")
def start(dataset: str, version: int | None, follow: bool, interval: float, url: str | None,
          token: str | None) -> None:
    """Curate DATASET: drop irrelevant images and duplicates into a new manifest version."""
    with client_of("curator", url, token) as curator:
        curation = curator.curate(dataset, version)
        click.echo(f"curation {curation.id}: {dataset} v{curation.version} ({curation.state.value})", err=True)
        if follow:
            _follow(curator, curation.id, interval)
        else:
            click.echo(curation.id)


@curate.command("status")
@click.argument("curation_id")
@service_options("curator")
def status(curation_id: str, url: str | None, token: str | None) -> None:
    """A curation's state, progress and report as JSON."""
    with client_of("curator", url, token) as curator:
        echo_json(curator.curation(curation_id).model_dump(mode="json"))


@curate.command("domains")
@click.argument("dataset")
@click.option("--version", "version", type=int, default=None)
@click.option("--top", type=int, default=20, show_default=True, help="how many domains to show (0: all)")
@service_options("curator")
def domains(dataset: str, version: int | None, top: int, url: str | None, token: str | None) -> None:
    """Source domains by their share of irrelevant images (what to blacklist)."""
    with client_of("curator", url, token) as curator:
        report = curator.domain_scores(dataset, version)
    shown = report.domains if top <= 0 else report.domains[:top]
    echo_json({**report.model_dump(mode="json", exclude={"domains"}),
               "domains": [domain.model_dump(mode="json") for domain in shown]})


def _follow(curator: Any, curation_id: str, interval: float) -> None:
    from tqdm import tqdm

    from shared.queue import TERMINAL_STATES, JobState

    curation = curator.curation(curation_id)
    bar = tqdm(total=0, unit="img", desc=curation_id, dynamic_ncols=True, file=sys.stderr)
    try:
        while True:
            done, total = curation.progress.get("done", 0), curation.progress.get("total", 0)
            if total and bar.total != total:
                bar.total = total
            bar.update(max(0, int(done) - bar.n))
            bar.set_postfix(stage=curation.progress.get("stage", curation.state.value), refresh=False)
            bar.refresh()
            if curation.state in TERMINAL_STATES:
                break
            time.sleep(interval)
            curation = curator.curation(curation_id)
    finally:
        bar.close()
    if curation.state is not JobState.completed:
        raise click.ClickException(f"curation {curation_id} {curation.state.value}: {curation.error or ''}".strip())
    click.echo(f"curation {curation_id} completed: wrote {curation.dataset} v{curation.output_version}")


@click.group()
def blacklist() -> None:
    """The domain blacklist harvests skip (through the curator API)."""


@blacklist.command("list")
@service_options("curator")
def blacklist_list(url: str | None, token: str | None) -> None:
    """Every entry with its reason and when it was added."""
    with client_of("curator", url, token) as curator:
        current = curator.blacklist()
    click.echo(f"revision {current.revision}: {len(current.entries)} entries")
    for entry in current.entries:
        click.echo(f"  {entry.entry:<40} {entry.reason}")


@blacklist.command("add")
@click.argument("entry")
@click.option("--reason", required=True, help="why (kept in the blacklist's history)")
@service_options("curator")
def blacklist_add(entry: str, reason: str, url: str | None, token: str | None) -> None:
    """Add a host (or host/path prefix): harvests skip its images from now on."""
    with client_of("curator", url, token) as curator:
        added = curator.add_to_blacklist(entry, reason, actor="cli")
    click.echo(f"blacklisted {added.entry}")


@blacklist.command("remove")
@click.argument("entry")
@click.option("--reason", default="removed", show_default=True)
@service_options("curator")
def blacklist_remove(entry: str, reason: str, url: str | None, token: str | None) -> None:
    """Remove an entry (the history keeps that it was there)."""
    with client_of("curator", url, token) as curator:
        left = curator.remove_from_blacklist(entry, reason, actor="cli")
    click.echo(f"removed {entry}: {len(left.entries)} entries left")
