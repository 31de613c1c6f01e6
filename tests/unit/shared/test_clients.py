"""The one place that retries (shared.clients.base): a GET is retried on connection errors, nothing else is;
checked against a real loopback HTTP server that starts listening only after the first attempt failed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.clients import ServiceRefused, ServiceUnavailable
from shared.clients.curator import CuratorClient
from shared.clients.downloader import DownloaderClient
from sporeprint.stack import free_port

pytestmark = pytest.mark.unit


class Answers(BaseHTTPRequestHandler):
    """``GET /blacklist``: an empty blacklist; ``POST /harvests``: 404 with a detail; anything else: 500."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/blacklist":
            self._answer(200, {"entries": [], "revision": 3})
        else:
            self._answer(500, {"detail": "boom"})

    def do_POST(self) -> None:  # noqa: N802
        self._answer(404, {"detail": "no such dataset or version"})

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass


@contextmanager
def serve_after(port: int, delay_s: float) -> Iterator[None]:
    servers: list[ThreadingHTTPServer] = []

    def start() -> None:
        time.sleep(delay_s)
        servers.append(ThreadingHTTPServer(("127.0.0.1", port), Answers))
        servers[0].serve_forever(poll_interval=0.05)

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    try:
        yield
    finally:
        deadline = time.monotonic() + 5
        while not servers and time.monotonic() < deadline:
            time.sleep(0.05)
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def late_server() -> Iterator[str]:
    """A server on a free port that opens 0.3 s from now."""
    port = free_port()
    with serve_after(port, 0.3):
        yield f"http://127.0.0.1:{port}"


def test_a_get_is_retried_until_the_service_answers(late_server: str) -> None:
    with CuratorClient(late_server, retries=4, retry_backoff_s=0.1) as curator:  # waits 0.1 + 0.2 + 0.4 s at most
        assert curator.blacklist().revision == 3


def test_a_get_without_retries_fails_at_once(late_server: str) -> None:
    with CuratorClient(late_server, retries=0) as curator, pytest.raises(ServiceUnavailable, match="did not answer"):
        curator.blacklist()


def test_a_post_is_never_retried(late_server: str) -> None:
    with DownloaderClient(late_server, "token", retries=4, retry_backoff_s=0.1) as downloader:
        with pytest.raises(ServiceUnavailable, match="did not answer POST /harvests"):
            downloader.harvest("fungi")
        time.sleep(0.5)  # now it listens: the same call is refused by the service, not unreachable
        with pytest.raises(ServiceRefused) as refused:
            downloader.harvest("fungi")
    assert (refused.value.status, refused.value.detail) == (404, "no such dataset or version")
    assert str(refused.value) == "downloader refused POST /harvests (404): no such dataset or version"


def test_a_5xx_is_unavailable_with_the_detail(late_server: str) -> None:
    with CuratorClient(late_server, retries=4, retry_backoff_s=0.1) as curator:
        with pytest.raises(ServiceUnavailable) as failed:
            curator.curation("0123456789abcdef")
    assert failed.value.status == 500 and str(failed.value).endswith("(500): boom")
