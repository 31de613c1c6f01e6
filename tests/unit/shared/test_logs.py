"""One log format for every process (shared.logs): JSON lines with the request and job ids, plain text in a
terminal, one handler however often it is configured; and the request id passed on to queued jobs and to the
services a client calls."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.api import request_id_from
from shared.clients.curator import CuratorClient
from shared.logs import (
    UVICORN_LOGGERS,
    StderrHandler,
    configure_logging,
    current_job_id,
    current_request_id,
    log_context,
    resolve_format,
)
from shared.queue import with_request_id

pytestmark = pytest.mark.unit

logger = logging.getLogger("sporeprint.test_logs")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Each test configures logging afresh; the process's logging is as before afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    uvicorn = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate)
               for name in UVICORN_LOGGERS}
    for handler in handlers:
        if isinstance(handler, StderrHandler):
            root.removeHandler(handler)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, (saved, propagate) in uvicorn.items():
        logging.getLogger(name).handlers[:] = saved
        logging.getLogger(name).propagate = propagate


def json_lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines()]


def test_json_lines_carry_the_fields_and_extras(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json", service="curator")
    logger.info("scored %d domains", 3, extra={"dataset": "fungi", "share": 0.25})
    logger.debug("not at INFO")
    [line] = json_lines(capsys.readouterr().err)
    assert line["level"] == "INFO" and line["logger"] == "sporeprint.test_logs"
    assert line["message"] == "scored 3 domains" and line["service"] == "curator"
    assert (line["dataset"], line["share"]) == ("fungi", 0.25)
    assert str(line["time"]).endswith("Z") and datetime.fromisoformat(str(line["time"]).replace("Z", "+00:00"))
    assert "request_id" not in line and "job_id" not in line and "exception" not in line


def test_an_exception_is_one_json_line_with_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        logger.exception("scoring failed\non two lines")
    [line] = json_lines(capsys.readouterr().err)
    assert line["level"] == "ERROR" and line["message"] == "scoring failed\non two lines"
    assert "Traceback" in str(line["exception"]) and "ZeroDivisionError" in str(line["exception"])


def test_non_finite_extras_still_make_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logger.info("loss", extra={"loss": float("nan")})
    [line] = json_lines(capsys.readouterr().err)
    assert line["loss"] == "nan"


def test_request_and_job_ids_come_from_the_context(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    with log_context(request_id="abc123"):
        assert current_request_id() == "abc123"
        logger.info("in the request")
        with log_context(request_id="abc123", job_id="curation-1"):
            logger.info("in the job")
            assert current_job_id() == "curation-1"
        logger.info("back in the request")
    logger.info("outside")
    assert current_request_id() is None and current_job_id() is None
    lines = json_lines(capsys.readouterr().err)
    assert [(line.get("request_id"), line.get("job_id")) for line in lines] == [
        ("abc123", None), ("abc123", "curation-1"), ("abc123", None), (None, None)]


def test_context_ids_reach_threads_that_copy_the_context(capsys: pytest.CaptureFixture[str]) -> None:
    import contextvars

    configure_logging("INFO", "json")
    with log_context(request_id="threaded"):
        context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(logger.info, "from a worker thread"))
    thread.start()
    thread.join()
    [line] = json_lines(capsys.readouterr().err)
    assert line["request_id"] == "threaded"


def test_text_mode_is_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "text")
    with log_context(request_id="abc123", job_id="h-1-1"):
        logger.warning("domain %s parked", "example.org")
    logger.info("no ids")
    first, second = capsys.readouterr().err.splitlines()
    assert first.endswith("WARNING sporeprint.test_logs [request abc123 job h-1-1]: domain example.org parked")
    assert second.endswith("INFO sporeprint.test_logs: no ids")
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_in_a_terminal_and_json_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert resolve_format("auto") == "json"
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert resolve_format("auto") == "text"
    assert resolve_format("json") == "json" and resolve_format("text") == "text"
    with pytest.raises(ValueError, match="log format"):
        resolve_format("xml")


def test_configuring_twice_keeps_one_handler_and_pytests(capsys: pytest.CaptureFixture[str],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    root = logging.getLogger()
    others = [handler for handler in root.handlers if not isinstance(handler, StderrHandler)]
    configure_logging("INFO", "text", service="downloader")
    configure_logging("debug", "json")
    ours = [handler for handler in root.handlers if isinstance(handler, StderrHandler)]
    assert len(ours) == 1 and root.level == logging.DEBUG
    assert [handler for handler in root.handlers if not isinstance(handler, StderrHandler)] == others
    logger.debug("once")
    [line] = json_lines(capsys.readouterr().err)
    assert (line["message"], line["service"]) == ("once", "downloader")  # the service given before stays
    assert [record.getMessage() for record in caplog.records] == ["once"]  # caplog still sees everything


def test_uvicorns_loggers_go_through_the_same_handler(capsys: pytest.CaptureFixture[str]) -> None:
    own = logging.StreamHandler(io.StringIO())
    logging.getLogger("uvicorn").addHandler(own)  # as uvicorn's dictConfig leaves it before importing the app
    logging.getLogger("uvicorn").propagate = False
    configure_logging("INFO", "json", service="trainer")
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    [line] = json_lines(capsys.readouterr().err)
    assert (line["logger"], line["service"]) == ("uvicorn.error", "trainer")
    assert own not in logging.getLogger("uvicorn").handlers
    assert all(logging.getLogger(name).propagate for name in UVICORN_LOGGERS)


@pytest.mark.parametrize("given", ["abc123", "A.b-c_9", "x" * 128])
def test_a_sane_request_id_is_kept(given: str) -> None:
    assert request_id_from(given) == given


@pytest.mark.parametrize("given", [None, "", "x" * 129, "abc\n123", 'a"b', "a b", "ümlaut", "a/b"])
def test_anything_else_gets_a_fresh_request_id(given: str | None) -> None:
    fresh = request_id_from(given)
    assert fresh != given and len(fresh) == 32 and int(fresh, 16) >= 0


def test_a_queued_job_carries_the_request_id() -> None:
    assert with_request_id(None) == {}
    with log_context(request_id="abc123"):
        assert with_request_id({"progress": {}}) == {"progress": {}, "request_id": "abc123"}
        assert with_request_id({"request_id": "given"}) == {"request_id": "given"}


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        _Recorder.seen.append(self.headers.get("X-Request-ID"))
        data = b'{"entries": [], "revision": 1}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass


def test_a_client_passes_the_request_id_on() -> None:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with CuratorClient(f"http://127.0.0.1:{server.server_port}") as curator:
            curator.blacklist()
            with log_context(request_id="abc123"):
                curator.blacklist()
    finally:
        server.shutdown()
        server.server_close()
    assert _Recorder.seen == [None, "abc123"]
