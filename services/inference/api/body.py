"""Reading request bodies within the size limit, before any parsing."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from services.inference.images import EMPTY_UPLOAD, UPLOAD_TOO_LARGE

MULTIPART_OVERHEAD = 64 * 1024
BAD_MULTIPART = "malformed multipart body"
TOO_MANY_FILES = "too many files in one request"
NOT_A_FILE_PART = "a part of the upload is not a file: send each photo as a file part"


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing it (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, UPLOAD_TOO_LARGE)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, UPLOAD_TOO_LARGE)
    if not body:
        raise HTTPException(400, EMPTY_UPLOAD)
    return bytes(body)


async def _once(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body
    yield b""


async def uploaded_files(request: Request, body: bytes, max_files: int, refuse_fields: bool = False
                         ) -> list[tuple[str | None, bytes]]:
    """(filename, bytes) of every file part of a multipart body already read by :func:`read_body`.

    Other (text) parts are ignored, or with ``refuse_fields`` refused with a 400 naming them: where every part
    should be a photo, a text part is a mistake the sender wants to hear about."""
    parser = MultiPartParser(request.headers, _once(body), max_files=max_files, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise HTTPException(413, f"{TOO_MANY_FILES} (at most {max_files})") from None
        raise HTTPException(400, f"{BAD_MULTIPART}: {exc.message}") from None
    files = []
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append((value.filename, await value.read()))
            elif refuse_fields:
                raise HTTPException(400, f"{NOT_A_FILE_PART}: {name[:100]!r}")
    finally:
        await form.close()
    return files
