"""The blacklist, stored durably at ``curation/blacklist.json`` with its change history.

Every change is a read-modify-write guarded by ``ObjectStore.compare_and_set``: of two concurrent
editors exactly one wins each round and the other re-reads and re-applies, so no update is lost.
The stored object is ``{"blacklist": <shared.curation.Blacklist>, "history": [BlacklistChange...]}``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.curation import SEED_BLACKLIST, Blacklist, BlacklistEntry, parse_entry
from shared.storage import ObjectStore, Pointer, PreconditionFailed

logger = logging.getLogger(__name__)

BLACKLIST_KEY = "curation/blacklist.json"
MAX_ATTEMPTS = 100


class ChangeAction(StrEnum):
    seed = "seed"
    add = "add"
    update = "update"
    remove = "remove"


class BlacklistChange(BaseModel):
    """One line of the history: who changed which entry, when, and why."""

    model_config = ConfigDict(extra="forbid")

    revision: int
    action: ChangeAction
    entry: str
    reason: str
    actor: str
    at: datetime


class EntryNotFound(LookupError):
    """DELETE of an entry that is not on the list."""


class TooMuchContention(RuntimeError):
    """Lost the compare-and-set race too many times in a row."""


def normalize_entry(entry: str) -> tuple[str, str, str | None]:
    """``(canonical entry, domain, path prefix)``; raises shared.curation.InvalidEntry."""
    domain, path = parse_entry(entry)
    return (domain + path if path else domain), domain, path


def seed_blacklist(now: datetime) -> tuple[Blacklist, list[BlacklistChange]]:
    entries = []
    history = []
    for raw, reason in SEED_BLACKLIST.items():
        canonical, domain, path = normalize_entry(raw)
        entries.append(BlacklistEntry(entry=canonical, domain=domain, path_prefix=path, reason=reason,
                                      added_by="seed", added_at=now))
        history.append(BlacklistChange(revision=1, action=ChangeAction.seed, entry=canonical, reason=reason,
                                       actor="seed", at=now))
    return Blacklist(entries=entries, revision=1), history


class BlacklistStore:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def _read(self) -> tuple[Blacklist, list[BlacklistChange], Pointer | None]:
        pointer = self.store.read_pointer(BLACKLIST_KEY)
        if pointer is None:
            blacklist, history = seed_blacklist(datetime.now(UTC))
            return blacklist, history, None
        value = pointer.value
        return (Blacklist.model_validate(value["blacklist"]),
                [BlacklistChange.model_validate(item) for item in value.get("history", [])], pointer)

    def get(self) -> Blacklist:
        return self._read()[0]

    def history(self) -> list[BlacklistChange]:
        return self._read()[1]

    def _update(self, change: Callable[[Blacklist, list[BlacklistChange]], tuple[Blacklist, BlacklistChange]]) -> \
            tuple[Blacklist, BlacklistChange]:
        for attempt in range(MAX_ATTEMPTS):
            blacklist, history, pointer = self._read()
            new, record = change(blacklist, history)
            document: dict[str, Any] = {"blacklist": new.model_dump(mode="json"),
                                        "history": [item.model_dump(mode="json") for item in [*history, record]]}
            try:
                self.store.compare_and_set(BLACKLIST_KEY, document, pointer)
                logger.info("blacklist r%d: %s %s by %s", new.revision, record.action, record.entry, record.actor)
                return new, record
            except PreconditionFailed:  # someone else changed it since we read: re-read and re-apply
                time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise TooMuchContention("blacklist changed too often while updating; retry")

    def put(self, entry: str, reason: str, actor: str) -> tuple[BlacklistEntry, bool]:
        """Add or update an entry; returns it and whether it is new."""
        canonical, domain, path = normalize_entry(entry)
        created = [False]

        def change(blacklist: Blacklist, history: list[BlacklistChange]) -> tuple[Blacklist, BlacklistChange]:
            now = datetime.now(UTC)
            revision = blacklist.revision + 1
            item = BlacklistEntry(entry=canonical, domain=domain, path_prefix=path, reason=reason, added_by=actor,
                                  added_at=now)
            others = [e for e in blacklist.entries if e.entry != canonical]
            created[0] = len(others) == len(blacklist.entries)
            action = ChangeAction.add if created[0] else ChangeAction.update
            entries = sorted([*others, item], key=lambda e: e.entry)
            return (Blacklist(entries=entries, revision=revision),
                    BlacklistChange(revision=revision, action=action, entry=canonical, reason=reason, actor=actor,
                                    at=now))

        new, _ = self._update(change)
        return next(e for e in new.entries if e.entry == canonical), created[0]

    def delete(self, entry: str, reason: str, actor: str) -> Blacklist:
        canonical, _, _ = normalize_entry(entry)

        def change(blacklist: Blacklist, history: list[BlacklistChange]) -> tuple[Blacklist, BlacklistChange]:
            entries = [e for e in blacklist.entries if e.entry != canonical]
            if len(entries) == len(blacklist.entries):
                raise EntryNotFound(canonical)
            revision = blacklist.revision + 1
            return (Blacklist(entries=entries, revision=revision),
                    BlacklistChange(revision=revision, action=ChangeAction.remove, entry=canonical, reason=reason,
                                    actor=actor, at=datetime.now(UTC)))

        return self._update(change)[0]
