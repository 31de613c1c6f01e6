"""The web page at ``/``: upload a photo, see the answer."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["page"])

PAGE = Path(__file__).resolve().parents[2] / "static" / "index.html"


@cache
def _page() -> str:
    return PAGE.read_text()


@router.get("/", response_model=None, response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse(_page())
