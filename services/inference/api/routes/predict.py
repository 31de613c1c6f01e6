"""POST /predict, /predict/batch and /predict/observation: photos (uploads or a URL) in, answers with a safety
notice out. A batch answers each photo on its own; an observation answers once for several photos of one
mushroom."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import ValidationError

from services.inference.api.body import MULTIPART_OVERHEAD, TOO_MANY_FILES, read_body, uploaded_files
from services.inference.api.deps import PredictorDep
from services.inference.fetch import UrlFetchFailed, UrlRefused
from services.inference.images import ImageRejected
from services.inference.predictor import ModelUnavailable, Predictor
from services.inference.schemas import BatchItem, BatchPrediction, ObservationPrediction, Prediction, PredictUrl
from shared.api import error_responses

router = APIRouter(prefix="/predict", tags=["predict"])

UNSUPPORTED_MEDIA = "send a photo as multipart/form-data (field 'file'), a raw image body, or JSON {\"url\": ...}"
NO_FILE = "no file in the upload: send the photo as the multipart field 'file'"
NO_FILES = "no files in the upload: send photos as multipart fields 'files'"
NO_PHOTOS = "no photos in the upload: send the observation's photos as multipart fields 'files'"
TOO_MANY_PHOTOS = "too many photos for one observation"
BAD_JSON = "the JSON body must be {\"url\": \"http(s)://...\"}"

TopK = Annotated[int | None, Query(ge=1, le=100, description="how many classes to list (default: the setting)")]

_IMAGE_SCHEMA = {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}, "required": ["file"]}
_PREDICT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _IMAGE_SCHEMA},
            "application/json": {"schema": PredictUrl.model_json_schema()},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/webp": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["files"],
                }
            }
        },
    }
}


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _require_model(predictor: Predictor) -> None:
    try:
        predictor.model()
    except ModelUnavailable as exc:
        raise HTTPException(503, str(exc)) from None


async def _answer(predictor: Predictor, data: bytes | None, url: str | None, explain: bool,
                  top_k: int | None) -> Prediction:
    """Run one prediction, mapping every refusal to its 4xx (or 503 without a model)."""
    try:
        if url is not None:
            return await predictor.predict_url(url, explain, top_k)
        assert data is not None
        return await predictor.predict_bytes(data, explain, top_k)
    except ModelUnavailable as exc:
        raise HTTPException(503, str(exc)) from None
    except ImageRejected as exc:
        raise HTTPException(exc.status_code, exc.detail) from None
    except UrlRefused as exc:
        raise HTTPException(400, str(exc)) from None
    except UrlFetchFailed as exc:
        raise HTTPException(422, str(exc)) from None


# Every answer /predict can give besides 200 and 422, documented so generated clients (and the fuzzer) know them.
PREDICT_ERRORS = error_responses({
    400: "not an image, truncated, a bomb, a refused URL",
    413: "over the upload or download size limit",
    415: "an unsupported media type",
    503: "no model is promoted yet, or the model is being loaded",
})


@router.post("", response_model=Prediction, openapi_extra=_PREDICT_BODY, responses=PREDICT_ERRORS)
async def predict(request: Request, predictor: PredictorDep, explain: bool = False, top_k: TopK = None
                  ) -> Prediction:
    """Identify the mushroom in one photo: a multipart upload, a raw image body, or JSON ``{"url": ...}``."""
    _require_model(predictor)
    media = _media_type(request)
    limit = predictor.settings.max_upload_bytes
    if media == "application/json":
        body = await read_body(request, 16 * 1024)
        try:
            url = PredictUrl.model_validate(json.loads(body)).url
        except (ValueError, ValidationError):
            raise HTTPException(422, BAD_JSON) from None
        return await _answer(predictor, None, url, explain, top_k)
    if media == "multipart/form-data":
        body = await read_body(request, limit + MULTIPART_OVERHEAD)
        files = await uploaded_files(request, body, max_files=1)
        if not files:
            raise HTTPException(400, NO_FILE)
        return await _answer(predictor, files[0][1], None, explain, top_k)
    if media.startswith("image/"):
        return await _answer(predictor, await read_body(request, limit), None, explain, top_k)
    raise HTTPException(415, UNSUPPORTED_MEDIA)


@router.post("/batch", response_model=BatchPrediction, openapi_extra=_BATCH_BODY, responses=PREDICT_ERRORS)
async def predict_batch(request: Request, predictor: PredictorDep, explain: bool = False, top_k: TopK = None
                        ) -> BatchPrediction:
    """Identify several photos in one call; a bad photo fails only its own item."""
    started = time.perf_counter()
    if _media_type(request) != "multipart/form-data":
        raise HTTPException(415, UNSUPPORTED_MEDIA)
    settings = predictor.settings
    body = await read_body(request, settings.max_batch_files * settings.max_upload_bytes + MULTIPART_OVERHEAD)
    files = await uploaded_files(request, body, max_files=settings.max_batch_files)
    if not files:
        raise HTTPException(400, NO_FILES)
    _require_model(predictor)

    async def one(index: int, filename: str | None, data: bytes) -> BatchItem:
        try:
            prediction = await _answer(predictor, data, None, explain, top_k)
        except HTTPException as exc:
            return BatchItem(index=index, filename=filename, status_code=exc.status_code, error=str(exc.detail))
        return BatchItem(index=index, filename=filename, prediction=prediction)

    results = await asyncio.gather(*(one(i, name, data) for i, (name, data) in enumerate(files)))
    return BatchPrediction(results=list(results), elapsed_ms=round((time.perf_counter() - started) * 1000, 3))


@router.post("/observation", response_model=ObservationPrediction, openapi_extra=_BATCH_BODY,
             responses=PREDICT_ERRORS)
async def predict_observation(request: Request, predictor: PredictorDep, top_k: TopK = None
                              ) -> ObservationPrediction:
    """Identify one mushroom from several photos of it (one observation): one answer from the mean of the
    mushroom photos' logits, each photo's own answer beside it. A photo that is not an image fails the request,
    naming it."""
    if _media_type(request) != "multipart/form-data":
        raise HTTPException(415, UNSUPPORTED_MEDIA)
    settings = predictor.settings
    limit = settings.max_observation_photos
    body = await read_body(request, limit * settings.max_upload_bytes + MULTIPART_OVERHEAD)
    try:
        files = await uploaded_files(request, body, max_files=limit, refuse_fields=True)
    except HTTPException as exc:
        if exc.status_code == 413 and str(exc.detail).startswith(TOO_MANY_FILES):
            raise HTTPException(413, f"{TOO_MANY_PHOTOS} (at most {limit})") from None
        raise
    if not files:
        raise HTTPException(400, NO_PHOTOS)
    _require_model(predictor)
    try:
        return await predictor.predict_observation(files, top_k)
    except ModelUnavailable as exc:
        raise HTTPException(503, str(exc)) from None
    except ImageRejected as exc:
        raise HTTPException(exc.status_code, exc.detail) from None
