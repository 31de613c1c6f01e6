"""``sporeprint harvest ...``: start, watch, cancel and resume harvests through the downloader API."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
import httpx


class _Api:
    def __init__(self, url: str | None, token: str | None) -> None:
        from shared.settings import Settings

        settings = Settings()
        self.url = (url or settings.downloader_url).rstrip("/")
        self.token = token or settings.api_token
        self.client = httpx.Client(base_url=self.url, timeout=30, trust_env=False)

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if method != "GET" else {}
        try:
            response = self.client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"the downloader at {self.url} did not answer: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise click.ClickException(f"{method} {path} answered {response.status_code}: {detail}")
        return dict(response.json())


def _api_options(function: Any) -> Any:
    function = click.option("--url", envvar="SPOREPRINT_DOWNLOADER_URL", help="downloader API (default: settings)")(
        function)
    return click.option("--token", envvar="SPOREPRINT_API_TOKEN", help="API token (default: settings)")(function)


@click.group("harvest")
def harvest_cli() -> None:
    """Harvest a manifest's images into object storage (through the downloader API)."""


@harvest_cli.command("start")
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
@_api_options
def start(dataset: str, version: int | None, max_per_class: int | None, classes: tuple[str, ...], max_side: int,
          keep_originals: bool, quality: int, min_width: int, min_height: int, concurrency: int, per_domain: int,
          timeout_s: float, retries: int, wait: bool, url: str | None, token: str | None) -> None:
    """Start harvesting DATASET and show its progress."""
    api = _Api(url, token)
    options: dict[str, Any] = {
        "resize": {"max_side": None if keep_originals else max_side, "quality": quality},
        "min_width": min_width, "min_height": min_height, "concurrency": concurrency, "per_domain": per_domain,
        "total_timeout_s": timeout_s, "retries": retries,
    }
    if max_per_class is not None:
        options["max_per_class"] = max_per_class
    if classes:
        options["classes"] = list(classes)
    harvest = api.call("POST", "/harvests", json={"dataset": dataset, "version": version, "options": options})
    click.echo(f"harvest {harvest['id']}: {dataset} v{harvest['version']} ({harvest['state']})", err=True)
    if wait:
        _watch(api, harvest["id"], 1.0)
    else:
        click.echo(harvest["id"])


@harvest_cli.command("watch")
@click.argument("harvest_id")
@click.option("--interval", type=float, default=1.0, show_default=True, help="seconds between polls")
@_api_options
def watch(harvest_id: str, interval: float, url: str | None, token: str | None) -> None:
    """Show a harvest's progress bar until it ends."""
    _watch(_Api(url, token), harvest_id, interval)


@harvest_cli.command("status")
@click.argument("harvest_id")
@_api_options
def status(harvest_id: str, url: str | None, token: str | None) -> None:
    """Print a harvest's state and counts as JSON."""
    import json

    click.echo(json.dumps(_Api(url, token).call("GET", f"/harvests/{harvest_id}"), indent=2))


@harvest_cli.command("cancel")
@click.argument("harvest_id")
@_api_options
def cancel(harvest_id: str, url: str | None, token: str | None) -> None:
    """Cancel a harvest (what it stored so far stays stored)."""
    view = _Api(url, token).call("DELETE", f"/harvests/{harvest_id}")
    click.echo(f"harvest {harvest_id}: {view['state']}")


@harvest_cli.command("resume")
@click.argument("harvest_id")
@click.option("--wait/--no-wait", default=True, show_default=True)
@_api_options
def resume(harvest_id: str, wait: bool, url: str | None, token: str | None) -> None:
    """Resume an interrupted harvest; images already stored are not fetched again."""
    api = _Api(url, token)
    view = api.call("POST", f"/harvests/{harvest_id}/resume")
    click.echo(f"harvest {harvest_id}: {view['state']}", err=True)
    if wait:
        _watch(api, harvest_id, 1.0)


def _watch(api: _Api, harvest_id: str, interval: float) -> None:
    from tqdm import tqdm

    from shared.queue import TERMINAL_STATES, JobState  # here, not at import: rq is slow to import for `--help`

    bar = tqdm(total=0, unit="img", desc=harvest_id, dynamic_ncols=True, file=sys.stderr)
    view: dict[str, Any] = {}
    try:
        while True:
            view = api.call("GET", f"/harvests/{harvest_id}")
            progress = view.get("progress", {})
            total = int(progress.get("total") or 0)
            if total and bar.total != total:
                bar.total = total
            done = int(progress.get("done") or 0)
            bar.update(max(0, done - bar.n))
            bar.set_postfix(state=view["state"], ok=progress.get("ok", 0), failed=progress.get("failed", 0),
                            skipped=progress.get("skipped", 0), eta=progress.get("eta_s"), refresh=False)
            bar.refresh()
            if view["state"] in TERMINAL_STATES:
                break
            time.sleep(interval)
    finally:
        bar.close()
    progress = view.get("progress", {})
    click.echo(f"harvest {harvest_id} {view['state']}: ok {progress.get('ok', 0)}, failed {progress.get('failed', 0)} "
               f"{progress.get('failed_by_reason', {})}, skipped {progress.get('skipped', 0)} "
               f"{progress.get('skipped_by_reason', {})}")
    if view.get("manifest_version"):
        click.echo(f"wrote {view['dataset']} v{view['manifest_version']}")
    if view["state"] == JobState.failed:
        raise click.ClickException(view.get("error") or "the harvest failed")
