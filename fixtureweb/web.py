"""The fixture web on loopback: in-process (a background thread with its own event loop) or in the
foreground (the CLI's `serve`)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

from aiohttp import web

from fixtureweb.config import WebConfig, preset
from fixtureweb.content import ContentStore
from fixtureweb.requestlog import RequestLog
from fixtureweb.server import STATS_PATH, FixtureHandler, build_app

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FixtureWebInfo:
    host: str
    port: int
    domains: tuple[str, ...]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def stats_url(self) -> str:
        return self.base_url + STATS_PATH

    def url(self, domain: str, path: str, style: str = "host") -> str:
        """`style` "host": `http://<domain>:<port><path>` (needs *.test mapped to loopback);
        "path": `http://<host>:<port>/<domain><path>` (works with any client)."""
        if not path.startswith("/"):
            path = "/" + path
        if style == "host":
            return f"http://{domain}:{self.port}{path}"
        if style == "path":
            return f"{self.base_url}/{domain}{path}"
        raise ValueError(f"style must be 'host' or 'path', got {style!r}")


async def start_site(handler: FixtureHandler, host: str, port: int) -> tuple[web.AppRunner, int]:
    # Short shutdown grace: a test stopping the server must not wait for a `hang` fault to finish.
    runner = web.AppRunner(build_app(handler), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, int(bound)


class FixtureWeb:
    """Serves `config` on `host:port` (port 0: a free one) from a daemon thread.

    >>> with FixtureWeb(preset(5, 1)) as web:
    ...     url = web.info.url("fungi-atlas.test", "/species/0/1.jpg", style="path")
    """

    def __init__(self, config: WebConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or preset()
        self.host = host
        self.requested_port = port
        self.log = RequestLog()
        self.handler = FixtureHandler(self.config, log=self.log)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._info: FixtureWebInfo | None = None

    @property
    def store(self) -> ContentStore:
        return self.handler.store

    @property
    def info(self) -> FixtureWebInfo:
        if self._info is None:
            raise RuntimeError("FixtureWeb is not started")
        return self._info

    @property
    def port(self) -> int:
        return self.info.port

    @property
    def base_url(self) -> str:
        return self.info.base_url

    def url(self, domain: str, path: str, style: str = "host") -> str:
        return self.info.url(domain, path, style)

    def start(self) -> FixtureWebInfo:
        if self._info is not None:
            return self._info
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._runner, port = loop.run_until_complete(start_site(self.handler, self.host, self.requested_port))
                self._info = FixtureWebInfo(self.host, port, self.config.domain_names)
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="fixtureweb", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        logger.info("fixture web serving %d domains on %s", len(self.config.domains), self.info.base_url)
        return self.info

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop = self._thread = None
        self._info = None

    def __enter__(self) -> FixtureWeb:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def warm(self, urls: Iterable[str], workers: int = 2, progress: Callable[[int], None] | None = None) -> int:
        """Pre-render what `urls` serve, so a benchmark measures serving, not drawing. Returns how many
        URLs name an image. Works before or after `start()`; the URLs' ports are ignored."""
        done = 0
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for ok in pool.map(self.handler.warm, urls):
                done += ok
                if progress is not None:
                    progress(done)
        return done


async def serve_forever(config: WebConfig, host: str, port: int,
                        on_ready: Callable[[FixtureWebInfo], None] | None = None,
                        warm_urls: Iterable[str] = ()) -> None:
    """Serve `config` on the running loop until cancelled (the CLI's foreground server), after
    pre-rendering `warm_urls`."""
    handler = FixtureHandler(config)
    warmed = sum(map(handler.warm, warm_urls))
    if warmed:
        logger.info("pre-rendered %d images", warmed)
    runner, bound = await start_site(handler, host, port)
    try:
        if on_ready is not None:
            on_ready(FixtureWebInfo(host, bound, config.domain_names))
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
