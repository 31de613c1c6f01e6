"""The blacklist: read it, add or update an entry, remove one; every change is in the history."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from services.curator.api.deps import StoreDep
from services.curator.blacklist import BlacklistChange, BlacklistStore, EntryNotFound
from services.curator.schemas import BlacklistPut
from shared.auth import TokenDep
from shared.curation import Blacklist, BlacklistEntry, InvalidEntry
from shared.storage import TooMuchContention

router = APIRouter(prefix="/blacklist", tags=["blacklist"])

INVALID_ENTRY = "invalid blacklist entry: give a domain (example.org) or a domain/path-prefix (example.org/images/)"
ENTRY_NOT_FOUND = "blacklist entry not found"
CONTENTION = "the blacklist changed too often while updating; retry"


@router.get("", response_model=Blacklist)
def get_blacklist(store: StoreDep) -> Blacklist:
    return BlacklistStore(store).get()


@router.get("/history", response_model=list[BlacklistChange])
def blacklist_history(store: StoreDep) -> list[BlacklistChange]:
    return BlacklistStore(store).history()


@router.put("/{entry:path}", response_model=BlacklistEntry)
def put_entry(entry: str, body: BlacklistPut, store: StoreDep, _: TokenDep, response: Response) -> BlacklistEntry:
    try:
        item, created = BlacklistStore(store).put(entry, body.reason, body.actor)
    except InvalidEntry as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{INVALID_ENTRY}: {exc}") from None
    except TooMuchContention:
        raise HTTPException(status.HTTP_409_CONFLICT, CONTENTION) from None
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return item


@router.delete("/{entry:path}", response_model=Blacklist)
def delete_entry(entry: str, store: StoreDep, _: TokenDep, actor: str = "api",
                       reason: str = "removed") -> Blacklist:
    try:
        return BlacklistStore(store).delete(entry, reason, actor)
    except InvalidEntry as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{INVALID_ENTRY}: {exc}") from None
    except EntryNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, ENTRY_NOT_FOUND) from None
    except TooMuchContention:
        raise HTTPException(status.HTTP_409_CONFLICT, CONTENTION) from None
