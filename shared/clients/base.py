"""What every service client shares: the base URL, the bearer token, timeouts, the one retry, the two errors.

A client is a synchronous ``httpx.Client`` (``trust_env=False``: a proxy from the environment never sees the
token) used as a context manager. Reads (GET) are retried on connection errors, since nothing was sent; no
other request is retried. Every failure is one of two errors: the service could not be reached or broke
(:class:`ServiceUnavailable`), or it refused the request (:class:`ServiceRefused`, with its detail). Every
request carries the current request id (``X-Request-ID``, ``shared.logs``): the called service logs under it.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from shared.logs import REQUEST_ID_HEADER, current_request_id

T = TypeVar("T")

_RETRIED = (httpx.ConnectError, httpx.ConnectTimeout)


class ServiceError(RuntimeError):
    """A call to a service did not give its answer; ``str(error)`` is one line a person can act on."""

    def __init__(self, service: str, method: str, path: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.service = service
        self.method = method
        self.path = path
        self.status = status


class ServiceUnavailable(ServiceError):
    """The service did not answer, failed (5xx), or answered something that is not its contract."""


class ServiceRefused(ServiceError):
    """The service refused the request (4xx); ``detail`` is the reason it gave."""

    status: int

    def __init__(self, service: str, method: str, path: str, status: int, detail: str, body: Any = None) -> None:
        super().__init__(service, method, path, f"{service} refused {method} {path} ({status}): {detail}", status)
        self.detail = detail
        self.body = body  # the JSON ``detail`` as sent (a dict for an import error), for callers that need it


def detail_text(detail: Any) -> str:
    """A FastAPI ``detail`` (a string, a {file, line, message} dict, or a list of validation errors) as a line."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict) and "message" in detail:
        where = ", ".join(f"{key} {detail[key]}" for key in ("file", "line", "column") if detail.get(key) is not None)
        return f"{where}: {detail['message']}" if where else str(detail["message"])
    if isinstance(detail, list) and all(isinstance(item, dict) and "msg" in item for item in detail):
        return "; ".join(f"{'.'.join(str(part) for part in item.get('loc', ()))}: {item['msg']}" for item in detail)
    return str(detail)


def segment(value: str, safe: str = "") -> str:
    """``value`` as one path segment (percent-encoded): an id with a slash or a ``?`` cannot reach another route."""
    return quote(value, safe=safe)


class ServiceClient:
    """The typed client of one service; subclasses add one method per route they use."""

    service: ClassVar[str]

    def __init__(self, base_url: str, token: str | None = None, *, timeout_s: float = 60.0,
                 connect_timeout_s: float = 5.0, retries: int = 2, retry_backoff_s: float = 0.2) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self._http = httpx.Client(base_url=self.base_url, trust_env=False,
                                  timeout=httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, answer: TypeAdapter[T], *,
              accept: Collection[int] = (), **request: Any) -> T:
        """Send one request and read its JSON answer as ``answer``; statuses in ``accept`` count as answers."""
        response = self._send(method, path, **request)
        if response.status_code >= 400 and response.status_code not in accept:
            raise self._failure(method, path, response)
        try:
            return answer.validate_json(response.content)
        except ValidationError as exc:
            raise ServiceUnavailable(
                self.service, method, path,
                f"{self.service} answered {method} {path} with something that is not its contract: "
                f"{exc.error_count()} errors, first: {exc.errors()[0]['msg']}", response.status_code) from None

    def _send(self, method: str, path: str, **request: Any) -> httpx.Response:
        headers: dict[str, str] = {"Accept": "application/json", **request.pop("headers", {})}
        request_id = current_request_id()
        if request_id is not None:  # the next service logs under the same id
            headers.setdefault(REQUEST_ID_HEADER, request_id)
        if method != "GET" and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        attempts = 1 + (self.retries if method == "GET" else 0)
        for attempt in range(attempts):
            try:
                return self._http.request(method, path, headers=headers, **request)
            except _RETRIED as exc:
                if attempt + 1 < attempts:
                    time.sleep(self.retry_backoff_s * 2**attempt)
                    continue
                raise self._unreachable(method, path, exc) from None
            except httpx.HTTPError as exc:
                raise self._unreachable(method, path, exc) from None
        raise AssertionError("unreachable: the loop returns or raises")

    def _unreachable(self, method: str, path: str, exc: httpx.HTTPError) -> ServiceUnavailable:
        reason = str(exc) or type(exc).__name__
        return ServiceUnavailable(self.service, method, path,
                                  f"{self.service} at {self.base_url} did not answer {method} {path}: {reason}")

    def _failure(self, method: str, path: str, response: httpx.Response) -> ServiceError:
        try:
            body: Any = response.json()
            detail = body.get("detail", body) if isinstance(body, Mapping) else body
        except ValueError:
            detail = response.text[:500] or response.reason_phrase
        if response.status_code >= 500:
            return ServiceUnavailable(
                self.service, method, path,
                f"{self.service} failed {method} {path} ({response.status_code}): {detail_text(detail)}",
                response.status_code)
        return ServiceRefused(self.service, method, path, response.status_code, detail_text(detail), detail)
