"""One log format for every service and worker: JSON lines for machines, plain text for a terminal.

``configure_logging`` puts one handler on the root logger (stderr) and routes uvicorn's loggers through it. Every
line carries the request id and, inside an RQ job, the job id: both live in context variables that the
request middleware (``shared.api``) and the worker (``shared.worker``) set, and that the typed clients
(``shared.clients``) and ``shared.queue.enqueue`` pass on to the next service or job.

A JSON line: ``{"time": "2026-01-02T03:04:05.678Z", "level": "INFO", "logger": "...", "message": "...",
"service": "curator", "request_id": "...", "job_id": "...", "exception": "Traceback ..."}`` plus any
``extra=`` fields of the call.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, Literal, get_args

REQUEST_ID_HEADER = "X-Request-ID"  # in a request: the caller's id; in a response: the id it was logged under

LogFormat = Literal["auto", "json", "text"]
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)

# uvicorn configures these with handlers of its own before it imports the app; they go through ours instead.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

_request_id: ContextVar[str | None] = ContextVar("sporeprint_request_id", default=None)
_job_id: ContextVar[str | None] = ContextVar("sporeprint_job_id", default=None)

# What every LogRecord has; anything else on a record came from ``extra=``.
_CONTEXT_FIELDS = ("service", "request_id", "job_id")
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "taskName", "color_message", *_CONTEXT_FIELDS,  # color_message: uvicorn's copy
}


def current_request_id() -> str | None:
    """The id of the request (or of the request that queued the job) being handled, if any."""
    return _request_id.get()


def current_job_id() -> str | None:
    """The id of the RQ job being run, if any."""
    return _job_id.get()


@contextmanager
def log_context(*, request_id: str | None = None, job_id: str | None = None) -> Iterator[None]:
    """Within the block, log lines (and outgoing requests, and queued jobs) carry these ids."""
    request_token = _request_id.set(request_id)
    job_token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(job_token)
        _request_id.reset(request_token)


def bind_request_id(request_id: str | None) -> Token[str | None]:
    """Set the request id in the current context; :func:`reset_request_id` with the token undoes it."""
    return _request_id.set(request_id)


def reset_request_id(token: Token[str | None]) -> None:
    _request_id.reset(token)


class ContextFilter(logging.Filter):
    """Adds ``service``, ``request_id`` and ``job_id`` to each record (unless the call passed its own)."""

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (("service", self.service), ("request_id", _request_id.get()),
                            ("job_id", _job_id.get())):
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # json.dumps would write NaN, which is not JSON
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        for name, value in record.__dict__.items():
            if name not in _RECORD_FIELDS and name not in entry and not name.startswith("_"):
                entry[name] = _json_safe(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2026-01-02 03:04:05,678 INFO services.curator.jobs [request 4f2a job c1]: message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = [f"{label} {value}" for label, value in (("request", getattr(record, "request_id", None)),
                                                        ("job", getattr(record, "job_id", None))) if value]
        setattr(record, "context", f" [{' '.join(ids)}]" if ids else "")  # noqa: B010 - not a LogRecord field
        try:
            return super().format(record)
        finally:
            delattr(record, "context")


class StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time of the call (pytest swaps it per test)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging must never break the caller
            self.handleError(record)


def resolve_format(format: str) -> Literal["json", "text"]:
    """``auto``: text when stderr is a terminal (a person reads it), else JSON (a log collector does)."""
    if format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {format!r}")
    if format == "auto":
        isatty = getattr(sys.stderr, "isatty", None)
        return "text" if isatty is not None and isatty() else "json"
    return "json" if format == "json" else "text"


def configure_logging(level: str = "INFO", format: str = "auto", *, service: str | None = None) -> None:
    """Log at ``level`` through one stderr handler in ``format`` (``auto``, ``json`` or ``text``).

    Idempotent: a second call reconfigures the handler it added, never adds another. Handlers that others put
    on the root logger (pytest's) stay. ``service`` names the process in every line; a later call without it
    keeps the one given before.
    """
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, StderrHandler)), None)
    if handler is None:
        handler = StderrHandler()
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
    for context in handler.filters:
        if isinstance(context, ContextFilter) and service is not None:
            context.service = service
    handler.setFormatter(JsonFormatter() if resolve_format(format) == "json" else TextFormatter())
    root.setLevel(level.upper())
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
