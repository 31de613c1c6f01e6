"""Strict JSON request bodies for every service: what Python's ``json`` module would let through and then break
on (``NaN``/``Infinity``, numbers beyond a float, 10^5 nested arrays, duplicate keys, invalid UTF-8, huge
bodies) is refused with a 4xx and a clear message before any route sees it.

FastAPI parses JSON with ``json.loads``, which accepts ``NaN`` and ``Infinity``; echoing such input in a 422
then fails to serialise (a 500), and a non-finite value that passes validation poisons whatever stores it.
The guard parses the body once, strictly; the route then parses the same bytes again (cheap for the small
JSON bodies the APIs take: photos and sources arrive as uploads, which the guard does not touch).
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_JSON_BYTES = 1 << 20
MAX_DEPTH = 64

NOT_FINITE = "JSON numbers must be finite: NaN, Infinity and numbers beyond a 64-bit float are not JSON"
TOO_DEEP = f"JSON nested deeper than {MAX_DEPTH} levels"
DUPLICATE_KEY = "JSON object with a duplicate key"
NOT_UTF8 = "JSON body is not valid UTF-8"
TOO_LARGE = f"JSON body larger than {MAX_JSON_BYTES} bytes"


class BodyRefused(ValueError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyRefused(422, f"{NOT_FINITE} (got {text[:40]})")
    return value


def _no_constant(text: str) -> Any:
    raise BodyRefused(422, f"{NOT_FINITE} (got {text})")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BodyRefused(422, f"{DUPLICATE_KEY}: {key[:80]!r}")
        result[key] = value
    return result


def _depth(body: str) -> int:
    """Deepest nesting of arrays and objects, outside strings (before parsing: the parser recurses)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in body:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def check_json(body: bytes) -> None:
    """Raise :class:`BodyRefused` for what ``json.loads`` would accept and then break on. Empty and plainly
    malformed bodies pass: the route refuses those in its own words."""
    if len(body) > MAX_JSON_BYTES:
        raise BodyRefused(413, TOO_LARGE)
    if not body.strip():
        return
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyRefused(400, NOT_UTF8) from None
    if _depth(text) > MAX_DEPTH:
        raise BodyRefused(422, TOO_DEEP)
    try:
        json.loads(text, parse_float=_finite_float, parse_int=_finite_int, parse_constant=_no_constant,
                   object_pairs_hook=_unique_keys)
    except BodyRefused:
        raise
    except ValueError:
        return  # plainly malformed JSON: the route answers it in its own words (FastAPI: a 422 json_invalid)


def _finite_int(text: str) -> int:
    if len(text.lstrip("-")) > 308:  # beyond any float: a model field would turn it into inf
        raise BodyRefused(422, f"{NOT_FINITE} (got an integer of {len(text)} digits)")
    return int(text)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            media = bytes(value).split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


class StrictJsonBodies:
    """ASGI middleware: checks JSON request bodies with :func:`check_json`, then hands the route the same bytes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS") or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_JSON_BYTES:
                await _refuse(send, BodyRefused(413, TOO_LARGE))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            check_json(body)
        except BodyRefused as refused:
            await _refuse(send, refused)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(send: Send, refused: BodyRefused) -> None:
    content = json.dumps({"detail": refused.detail}).encode()
    await send({"type": "http.response.start", "status": refused.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]})
    await send({"type": "http.response.body", "body": content})
