"""The fixture web on a free loopback port, in a thread of the test process (its request log is then
readable directly), plus helpers to build sources that point at it."""

from __future__ import annotations

import asyncio
import csv
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from fixtureweb.config import WebConfig
from fixtureweb.content import ImageSpec, media_path
from fixtureweb.server import FixtureHandler, build_app
from sporeprint.stack import free_port


class RunningWeb:
    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.handler = FixtureHandler(config)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._serve, name="fixtureweb", daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(build_app(self.handler), access_log=None, handler_cancellation=True,
                                     shutdown_timeout=0.5)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> RunningWeb:
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("fixture web did not start")
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def url(self, domain: str, path: str) -> str:
        """A URL by Host name (resolved to 127.0.0.1 by the downloader's resolve override)."""
        return f"http://{domain}:{self.port}{path}"

    @property
    def log(self):  # noqa: ANN201 - fixtureweb.requestlog.RequestLog
        return self.handler.log


@dataclass(frozen=True)
class SourceRow:
    url: str
    label: str


def species_rows(web: RunningWeb, count: int, *, start: int = 0, domains: Iterable[str] | None = None,
                 n_classes: int | None = None) -> list[SourceRow]:
    """``count`` distinct clean photos spread over ``domains`` (default: every domain of the web)."""
    names = list(domains or web.config.domain_names)
    classes = n_classes or web.config.n_classes
    catalog = web.handler.store.catalog
    rows = []
    for i in range(start, start + count):
        cls = i % classes
        path = media_path(ImageSpec("species", cls, 10_000 + i)).replace("/media/", "/img/")
        rows.append(SourceRow(web.url(names[i % len(names)], path), catalog[cls].name))
    return rows


def write_csv(path: Path, rows: Iterable[SourceRow]) -> Path:
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["url", "label"])
        for row in rows:
            writer.writerow([row.url, row.label])
    return path
