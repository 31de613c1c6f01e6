"""Fixtures of the contract tests: a service's real app under uvicorn with its shared client pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from shared.clients import ServiceClient, ServiceRefused
from shared.settings import Settings
from sporeprint.processes import ManagedProcess

Client = TypeVar("Client", bound=ServiceClient)


@pytest.fixture
def client_of(settings: Settings, run_service: Callable[..., ManagedProcess]) -> Iterator[Callable[..., ServiceClient]]:
    """``client_of(DownloaderClient)``: the real service for that client (its ``main:app``, or ``app``) with the
    test's settings, and the client with the test token; both stopped at teardown."""
    clients: list[ServiceClient] = []

    def start(client_type: type[Client], app: str | None = None, extra_env: dict[str, str] | None = None) -> Client:
        name = client_type.service
        service = run_service(name, app or f"services.{name}.main:app", settings, extra_env)
        client = client_type(service.url, settings.api_token)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()


def refusal(call: Callable[[], object]) -> tuple[int, str]:
    """The status and detail of the :class:`ServiceRefused` that ``call`` must raise."""
    with pytest.raises(ServiceRefused) as refused:
        call()
    return refused.value.status, refused.value.detail


# Every service's app, for the tests that hold all four to the same rules (skeleton, fuzz, hostile bodies).
SERVICE_APPS = {
    "downloader": "services.downloader.main:app",
    "curator": "services.curator.main:app",
    "trainer": "services.trainer.main:app",
    "inference": "services.inference.main:app",
}


@pytest.fixture
def start_app(settings: Settings, run_service: Callable[..., ManagedProcess]) -> Callable[[str], ManagedProcess]:
    """``start_app("curator")``: that service under uvicorn with the test's settings (the inference service
    without its relevance gate, which these tests do not exercise and which takes seconds to load)."""

    def start(name: str) -> ManagedProcess:
        extra = {"SPOREPRINT_INFERENCE_RELEVANCE_GATE": "false"} if name == "inference" else None
        return run_service(name, SERVICE_APPS[name], settings, extra)

    return start
