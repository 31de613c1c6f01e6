"""schemathesis against every service's own OpenAPI schema, each service running under uvicorn
on the real local stack: no 5xx for any generated request, and every response matches its schema.

Examples are bounded (FUZZ_EXAMPLES per operation) so CI stays fast; raise it locally to dig deeper.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.settings import Settings
from sporeprint.processes import ManagedProcess
from tests.contract.conftest import SERVICE_APPS

pytestmark = pytest.mark.contract

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))


@schemathesis.check
def no_crash(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    """No 5xx except a 503 the operation documents (e.g. /predict before any model is promoted)."""
    if response.status_code >= 500 and response.status_code != 503:
        raise AssertionError(f"{case.method} {case.formatted_path} answered {response.status_code}: "
                             f"{response.text[:300]}")
    return None


# status_code_conformance makes a 503 fail unless the operation documents it
CHECKS = (no_crash, status_code_conformance, content_type_conformance, response_schema_conformance)


@pytest.mark.parametrize("service", sorted(SERVICE_APPS))
def test_no_server_errors_and_responses_match_schema(
    service: str, settings: Settings, run_service: Callable[..., ManagedProcess]
) -> None:
    process = run_service(service, SERVICE_APPS[service], settings)
    schema = schemathesis.openapi.from_url(f"{process.url}/openapi.json")
    headers = {"Authorization": f"Bearer {settings.api_token}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings_for_fuzz
        @given(case=operation.as_strategy())
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

        try:
            fuzz()
        except Exception as exc:  # noqa: BLE001 - collect every failing operation, then report them together
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert operations > 0, f"{service} publishes no operations"
    assert process.alive(), f"{service} died while fuzzed:\n{process.log_tail()}"
    assert not failures, "\n\n".join(failures)


settings_for_fuzz = settings(
    max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
    suppress_health_check=list(HealthCheck),
)
