"""What every API-driving command shares: ``--url`` / ``--token`` options and the typed client they make."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

SERVICES = ("downloader", "curator", "trainer", "inference")


def service_options(service: str) -> Callable[[F], F]:
    """``--url`` (default: SPOREPRINT_<SERVICE>_URL) and ``--token`` (default: SPOREPRINT_API_TOKEN)."""
    assert service in SERVICES

    def decorate(function: F) -> F:
        function = click.option("--url", default=None,
                                help=f"the {service} API (default: SPOREPRINT_{service.upper()}_URL)")(function)
        return click.option("--token", default=None, help="API token (default: SPOREPRINT_API_TOKEN)")(function)

    return decorate


def client_of(service: str, url: str | None, token: str | None) -> Any:
    """The typed client (shared/clients) of ``service`` at ``url`` or the settings' address."""
    from shared.clients.curator import CuratorClient
    from shared.clients.downloader import DownloaderClient
    from shared.clients.inference import InferenceClient
    from shared.clients.trainer import TrainerClient
    from shared.settings import Settings

    settings = Settings()
    kind = {"downloader": DownloaderClient, "curator": CuratorClient, "trainer": TrainerClient,
            "inference": InferenceClient}[service]
    return kind(url or getattr(settings, f"{service}_url"), token or settings.api_token)


def read_document(path: Path) -> dict[str, Any]:
    """A YAML or JSON file holding one mapping (a job spec, a sweep), or one clear error."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise click.ClickException(f"{path}: cannot read it as {'JSON' if path.suffix == '.json' else 'YAML'}: "
                                   f"{str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise click.ClickException(f"{path}: expected a mapping of spec fields at the top")
    where = _non_finite(document)
    if where is not None:
        raise click.ClickException(f"{path}: {where or 'a value'} is not a finite number (NaN or infinity)")
    return document


def _non_finite(value: Any, where: str = "") -> str | None:
    """The dotted path of the first NaN or infinity in ``value`` (JSON has neither), or ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def ended(answer: Any) -> bool:
    """A harvest, curation or training job has ended (completed, failed or cancelled)."""
    from shared.queue import TERMINAL_STATES

    return answer.state in TERMINAL_STATES


def follow(poll: Callable[[], T], *, desc: str, unit: str, interval: float,
           progress: Callable[[T], tuple[int, int, dict[str, Any]]],
           finished: Callable[[T], bool] = ended) -> T:
    """Poll ``poll`` every ``interval`` s under a progress bar on stderr until ``finished`` says so; ``progress``
    gives (done, total, figures beside the bar). The first poll runs before the bar appears, so an unknown id or
    a service that is down is one line. Returns the last answer."""
    from tqdm import tqdm

    current = poll()
    bar = tqdm(total=0, unit=unit, desc=desc, dynamic_ncols=True, file=sys.stderr)
    try:
        while True:
            done, total, figures = progress(current)
            if total and bar.total != total:
                bar.total = total
            bar.update(max(0, done - bar.n))
            bar.set_postfix(figures, refresh=False)
            bar.refresh()
            if finished(current):
                return current
            time.sleep(interval)
            current = poll()
    finally:
        bar.close()
