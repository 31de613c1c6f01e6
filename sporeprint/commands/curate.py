"""``sporeprint curate``: domain scores, a curation run (filter, duplicates, a curated manifest version)."""

from __future__ import annotations

from typing import Any

import click

from sporeprint.commands.common import client_of, echo_json, follow, percent, service_options


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


@curate.command("sample")
@click.argument("dataset")
@click.argument("domain")
@click.option("--version", "version", type=int, default=None)
@click.option("-n", "count", type=click.IntRange(1, 500), default=24, show_default=True, help="images to show")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="the same seed gives the same sample")
@click.option("--json", "as_json", is_flag=True, help="print the sample as JSON")
@service_options("curator")
def sample(dataset: str, domain: str, version: int | None, count: int, seed: int | None, as_json: bool,
           url: str | None, token: str | None) -> None:
    """A random sample of DOMAIN's images with their irrelevance scores: look before you blacklist."""
    with client_of("curator", url, token) as curator:
        found = curator.domain_sample(dataset, domain, version, count, seed)
    if as_json:
        echo_json(found.model_dump(mode="json"))
        return
    click.echo(f"{domain}: {len(found.images)} of {found.available} images in {dataset} v{found.version} "
               f"(seed {found.seed})")
    for image in found.images:
        score = "-" if image.irrelevant_score is None else f"{image.irrelevant_score:.2f}"
        click.echo(f"  {image.image_id}  irrelevant {score:>4}  {image.label or '':<10}  {image.url}")


@curate.command("label")
@click.argument("dataset")
@click.argument("image_ids", nargs=-1, required=True)
@click.option("--relevant", "label", flag_value="relevant", help="these are mushroom photos")
@click.option("--irrelevant", "label", flag_value="irrelevant", help="these are sheets, labels, not mushrooms")
@click.option("--version", "version", type=int, default=None)
@service_options("curator")
def label(dataset: str, image_ids: tuple[str, ...], label: str | None, version: int | None, url: str | None,
          token: str | None) -> None:
    """Label images by hand: labels override the filter in curations and train its probe."""
    if label is None:
        raise click.UsageError("say what they are: --relevant or --irrelevant")
    with client_of("curator", url, token) as curator:
        result = curator.add_labels(dataset, dict.fromkeys(image_ids, label), version, actor="cli")
    click.echo(f"labelled {result.stored} images {label} ({result.total_labelled} labels in all)")


@curate.command("labels")
@click.option("--dataset", default=None)
@click.option("--domain", default=None)
@service_options("curator")
def labels(dataset: str | None, domain: str | None, url: str | None, token: str | None) -> None:
    """The human labels, with who gave them and when."""
    with client_of("curator", url, token) as curator:
        found = curator.labels(dataset, domain)
    click.echo(f"{len(found)} labels")
    for item in found:
        click.echo(f"  {item.image_id}  {item.label:<10}  {item.domain:<30} {item.actor} {item.at:%Y-%m-%d %H:%M}")


@curate.group("filter")
def relevance_filter() -> None:
    """The relevance gate: which images count as not a mushroom photo."""


@relevance_filter.command("status")
@service_options("curator")
def filter_status(url: str | None, token: str | None) -> None:
    """The gate in force (zero-shot, or corrected by a probe fitted on human labels) and its held-out figures."""
    with client_of("curator", url, token) as curator:
        found = curator.filter_status()
    click.echo(f"gate {found.gate} ({found.mode}), prior log-odds {found.prior_log_odds:+.2f}")
    if found.probe is not None:
        _probe_figures(found.probe)


@relevance_filter.command("train")
@click.argument("dataset")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None, help="irrelevant above (held-out figures)")
@service_options("curator")
def filter_train(dataset: str, threshold: float | None, url: str | None, token: str | None) -> None:
    """Refit the probe from the human labels of DATASET; the next curation uses it."""
    with client_of("curator", url, token) as curator:
        probe = curator.train_filter(dataset, threshold)
    _probe_figures(probe)


def _probe_figures(probe: Any) -> None:
    click.echo(f"probe on {probe.pretrained}, {probe.human_labels} human labels ({probe.irrelevant_labels} "
               f"irrelevant), trained {probe.trained_at:%Y-%m-%d %H:%M}")
    click.echo(f"held out {probe.held_out}: precision {percent(probe.held_out_precision)}, recall "
               f"{percent(probe.held_out_recall)} (zero-shot alone: {percent(probe.held_out_zero_shot_precision)}, "
               f"{percent(probe.held_out_zero_shot_recall)})")


def _follow(curator: Any, curation_id: str, interval: float) -> None:
    from shared.queue import JobState

    def images(curation: Any) -> tuple[int, int, dict[str, Any]]:
        return (int(curation.progress.get("done", 0)), int(curation.progress.get("total", 0)),
                {"stage": curation.progress.get("stage", curation.state.value)})

    curation = follow(lambda: curator.curation(curation_id), desc=curation_id, unit="img", interval=interval,
                      progress=images)
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


@blacklist.command("history")
@service_options("curator")
def blacklist_history(url: str | None, token: str | None) -> None:
    """Every change to the blacklist: revision, added or removed, who, when, why."""
    with client_of("curator", url, token) as curator:
        changes = curator.blacklist_history()
    for change in changes:
        click.echo(f"r{change.revision:<4} {change.at:%Y-%m-%d %H:%M}  {change.action:<7} {change.entry:<40} "
                   f"{change.actor}: {change.reason}")
