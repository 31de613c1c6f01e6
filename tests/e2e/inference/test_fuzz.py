"""schemathesis fuzzes every route of the running service from its own OpenAPI schema: never a 5xx."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.e2e.inference.conftest import Served

pytestmark = [pytest.mark.e2e, pytest.mark.ml]


def test_no_route_answers_a_server_error(served: Served) -> None:
    # schemathesis' pytest loader (from_fixture) does not run on pytest 9 yet: drive hypothesis directly.
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/predict", "/predict/batch", "/model", "/ready", "/health"}
    before = requests_served(served)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error], timeout=30)

        call()
    assert requests_served(served) >= before + 3 * len(operations)  # the fuzzer really called the service


def requests_served(served: Served) -> float:
    text = httpx.get(f"{served.url}/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("sporeprint_inference_requests_total{"))
