"""Strict JSON bodies: what json.loads lets through and FastAPI then breaks on is refused with a 4xx."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from shared.json_guard import (
    DUPLICATE_KEY,
    MAX_DEPTH,
    NOT_FINITE,
    NOT_UTF8,
    TOO_DEEP,
    TOO_LARGE,
    BodyRefused,
    StrictJsonBodies,
    check_json,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("body", "status", "message"), [
    (b'{"lr": NaN}', 422, NOT_FINITE),
    (b'{"lr": Infinity}', 422, NOT_FINITE),
    (b'[-Infinity]', 422, NOT_FINITE),
    (b'{"lr": 1e400}', 422, NOT_FINITE),
    (b'{"n": 1' + b"0" * 400 + b"}", 422, NOT_FINITE),
    (b"[" * 100_000 + b"]" * 100_000, 422, TOO_DEEP),
    (b'{"a": 1, "a": 2}', 422, DUPLICATE_KEY),
    (b'{"a": "\xff\xfe"}', 400, NOT_UTF8),
    (b'"' + b"x" * (2 << 20) + b'"', 413, TOO_LARGE),
])
def test_hostile_bodies_are_refused_with_the_reason(body: bytes, status: int, message: str) -> None:
    with pytest.raises(BodyRefused) as refused:
        check_json(body)
    assert refused.value.status == status and refused.value.detail.startswith(message)


@pytest.mark.parametrize("body", [
    b"", b"{}", b'{"lr": 1e-4, "n": -3, "name": "NaN", "s": "[[[[", "e": "\\"{"}',
    b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, b'{"big": 1.7976931348623157e308}',
    b'{"a": ', b"not json",  # malformed: the route says so in its own words
])
def test_ordinary_and_malformed_json_pass(body: bytes) -> None:
    check_json(body)


class Spec(BaseModel):
    lr: float


def _app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(StrictJsonBodies)

    @app.post("/jobs")
    def create(spec: Spec) -> dict[str, float]:
        return {"lr": spec.lr}

    return app


def test_the_middleware_answers_before_the_route_and_passes_good_bodies_through() -> None:
    with TestClient(_app(), raise_server_exceptions=True) as client:
        refused = client.post("/jobs", content=b'{"lr": NaN}', headers={"content-type": "application/json"})
        assert refused.status_code == 422 and refused.json()["detail"].startswith(NOT_FINITE)
        assert client.post("/jobs", json={"lr": 0.5}).json() == {"lr": 0.5}
        # a content type with parameters is still JSON; a non-JSON content type is the route's business
        charset = client.post("/jobs", content=b'{"lr": Infinity}',
                              headers={"content-type": "application/json; charset=utf-8"})
        assert charset.status_code == 422
        assert client.post("/jobs", content=b'{"lr": 1}', headers={"content-type": "text/plain"}).status_code == 422
