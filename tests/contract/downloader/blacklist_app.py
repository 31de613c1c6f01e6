"""A stand-in curator for tests: a real FastAPI app serving ``GET /blacklist`` in the shared contract's
shape. Entries come from ``BLACKLIST_ENTRIES`` (JSON: {entry: reason}); ``BLACKLIST_STATUS`` makes it
answer an error instead, ``BLACKLIST_BODY`` answer that JSON (outside the contract) instead."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse

from shared.curation import Blacklist, BlacklistEntry, parse_entry

app = FastAPI(title="test curator")


def blacklist_from(entries: dict[str, str], revision: int = 1) -> Blacklist:
    items = []
    for entry, reason in entries.items():
        domain, path = parse_entry(entry)
        items.append(BlacklistEntry(entry=entry, domain=domain, path_prefix=path, reason=reason, added_by="test",
                                    added_at=datetime(2026, 1, 1, tzinfo=UTC)))
    return Blacklist(entries=items, revision=revision)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/blacklist", response_model=Blacklist)
def blacklist() -> Blacklist | JSONResponse:
    failure = os.environ.get("BLACKLIST_STATUS")
    if failure:
        raise HTTPException(int(failure), "curator is unwell")
    if "BLACKLIST_BODY" in os.environ:
        return JSONResponse(json.loads(os.environ["BLACKLIST_BODY"]))
    return blacklist_from(json.loads(os.environ.get("BLACKLIST_ENTRIES", "{}")), revision=7)
