"""Every service is built on shared.api.service_app: each one, running under uvicorn on the real local stack,
answers /health, serves Prometheus metrics per route template, and refuses an invalid dataset name with the
same status and message."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared.schemas import INVALID_DATASET
from shared.settings import Settings
from sporeprint.processes import ManagedProcess
from tests.contract.conftest import SERVICE_APPS

pytestmark = pytest.mark.contract


BAD_NAME = "Not A Dataset!"
# (method, path, JSON body or query) per service: each carries the bad dataset name in a different place.
BAD_DATASET_REQUESTS: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "downloader": [("GET", f"/manifests/{BAD_NAME}", {}), ("POST", "/harvests", {"json": {"dataset": BAD_NAME}})],
    "curator": [("GET", "/domains", {"params": {"dataset": BAD_NAME}}),
                ("POST", "/curations", {"json": {"dataset": BAD_NAME}}),
                ("GET", "/labels", {"params": {"dataset": BAD_NAME}})],
    "trainer": [("POST", "/jobs", {"json": {"data": {"dataset": BAD_NAME}}}),
                ("GET", "/presets/demo", {"params": {"dataset": BAD_NAME}})],
    "inference": [],  # it takes no dataset name
}


def _messages(body: dict[str, Any]) -> list[str]:
    detail = body["detail"]
    return [detail] if isinstance(detail, str) else [str(item.get("msg", "")) for item in detail]


@pytest.mark.parametrize("service", sorted(SERVICE_APPS))
def test_one_skeleton(service: str, settings: Settings, start_app: Callable[[str], ManagedProcess]) -> None:
    process = start_app(service)
    auth = {"Authorization": f"Bearer {settings.api_token}"}
    with httpx.Client(base_url=process.url, timeout=30, trust_env=False) as client:
        assert client.get("/health").json() == {"status": "ok"}
        for method, path, kwargs in BAD_DATASET_REQUESTS[service]:
            response = client.request(method, path, headers=auth, **kwargs)
            assert response.status_code == 422, (method, path, response.text)
            assert any(INVALID_DATASET in message for message in _messages(response.json())), response.text
        client.get("/no/such/route")
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        text = metrics.text
        # the readiness wait polled /health too: at least our one call is counted
        assert re.search(rf'sporeprint_{service}_requests_total{{endpoint="/health",status="200"}} [1-9]', text)
        assert f'sporeprint_{service}_requests_total{{endpoint="other",status="404"}} 1.0' in text
        if service == "downloader":  # a path parameter is counted under its route template
            assert 'endpoint="/manifests/{dataset}",status="422"' in text
        operation_ids = [op["operationId"] for path in client.get("/openapi.json").json()["paths"].values()
                         for op in path.values()]
        assert "health-health" in operation_ids and "health-metrics" in operation_ids
        assert all("-" in op for op in operation_ids), operation_ids
