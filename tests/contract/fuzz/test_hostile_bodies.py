"""What schemathesis never generates (it sends valid JSON only): hostile bodies at every JSON route of the four
services, each running under uvicorn on the real local stack. Every answer is a 4xx (never a 5xx, never a
hang) and the service keeps answering afterwards."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from shared.settings import Settings
from sporeprint.processes import ManagedProcess
from tests.contract.conftest import SERVICE_APPS

pytestmark = pytest.mark.contract

JSON = "application/json"
HOSTILE: dict[str, tuple[bytes, str]] = {
    "nan": (b'{"dataset": NaN, "data": {"dataset": NaN}, "url": NaN}', JSON),
    "infinity": (b'{"x": Infinity, "y": -Infinity}', JSON),
    "1e400": (b'{"dataset": "d", "version": 1e400, "threshold": 1e400}', JSON),
    "huge integer": (b'{"version": 1' + b"0" * 400 + b"}", JSON),
    "deep nesting": (b"[" * 100_000 + b"]" * 100_000, JSON),
    "10 MB string": (b'{"dataset": "' + b"a" * 10_000_000 + b'"}', JSON),
    "invalid utf-8": (b'{"dataset": "\xff\xfe\xfd"}', JSON),
    "duplicate keys": (b'{"dataset": "a", "dataset": "b"}', JSON),
    "empty body": (b"", JSON),
    "truncated": (b'{"dataset": ', JSON),
    "not json": (b"dataset=fungi", JSON),
    "wrong content type": (b'{"dataset": "fungi"}', "text/plain"),
    "xml": (b"<dataset>fungi</dataset>", "application/xml"),
}


def json_routes(spec: dict) -> list[tuple[str, str]]:
    """(method, path) of every operation that takes a JSON body; path parameters filled with a plain value."""
    routes = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if JSON in content:
                routes.append((method.upper(), re.sub(r"\{[^}]+\}", "x", path)))
    return routes


@pytest.mark.parametrize("service", sorted(SERVICE_APPS))
def test_hostile_bodies_get_a_4xx_and_the_service_keeps_answering(
    service: str, settings: Settings, start_app: Callable[[str], ManagedProcess]
) -> None:
    process = start_app(service)
    auth = {"Authorization": f"Bearer {settings.api_token}"}
    with httpx.Client(base_url=process.url, timeout=60, trust_env=False) as client:
        routes = json_routes(client.get("/openapi.json").json())
        assert routes, "every service has at least one JSON route"
        answers = []
        for method, path in routes:
            for name, (body, content_type) in HOSTILE.items():
                response = client.request(method, path, content=body,
                                          headers={**auth, "Content-Type": content_type})
                answers.append((method, path, name, response.status_code, response.text[:160]))
                assert client.get("/health").status_code == 200, f"{service} stopped answering after {name}"
        # /predict with no model promoted answers its documented 503 to anything the guard let through
        server_errors = [answer for answer in answers if not 400 <= answer[3] < 500
                         and not (answer[3] == 503 and "no model is promoted" in answer[4])]
        assert not server_errors, "\n".join(map(str, server_errors))
        nan = [answer for answer in answers if answer[2] == "nan"]
        assert all("finite" in answer[4] for answer in nan), nan  # the reason, not a generic error
