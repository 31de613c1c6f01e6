"""The blacklist, stored durably at ``curation/blacklist.json`` with its change history.

Every change is a read-modify-write through ``ObjectStore.update`` (compare-and-set): of two concurrent
editors exactly one wins each round and the other re-reads and re-applies, so no update is lost.
The stored object is ``{"blacklist": <shared.curation.Blacklist>, "history": [BlacklistChange...]}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.curation import Blacklist, BlacklistEntry, canonical_entry, seed_blacklist
from shared.storage import ObjectStore

logger = logging.getLogger(__name__)

BLACKLIST_KEY = "curation/blacklist.json"


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


class BlacklistStore:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @staticmethod
    def _parse(value: dict[str, Any] | None) -> tuple[Blacklist, list[BlacklistChange]]:
        if value is None:  # nobody has edited the list yet: the seed, with its history line per entry
            seed = seed_blacklist()
            return seed, [BlacklistChange(revision=seed.revision, action=ChangeAction.seed, entry=item.entry,
                                          reason=item.reason, actor="seed", at=item.added_at)
                          for item in seed.entries]
        return (Blacklist.model_validate(value["blacklist"]),
                [BlacklistChange.model_validate(item) for item in value.get("history", [])])

    def _read(self) -> tuple[Blacklist, list[BlacklistChange]]:
        pointer = self.store.read_pointer(BLACKLIST_KEY)
        return self._parse(pointer.value if pointer is not None else None)

    def get(self) -> Blacklist:
        return self._read()[0]

    def history(self) -> list[BlacklistChange]:
        return self._read()[1]

    def _update(self, change: Callable[[Blacklist], tuple[Blacklist, BlacklistChange]]) -> \
            tuple[Blacklist, BlacklistChange]:
        def document(value: dict[str, Any] | None) -> dict[str, Any]:
            blacklist, history = self._parse(value)
            new, record = change(blacklist)
            return {"blacklist": new.model_dump(mode="json"),
                    "history": [item.model_dump(mode="json") for item in [*history, record]]}

        new, history = self._parse(self.store.update(BLACKLIST_KEY, document))
        record = history[-1]  # the change just applied
        logger.info("blacklist r%d: %s %s by %s", new.revision, record.action, record.entry, record.actor)
        return new, record

    def put(self, entry: str, reason: str, actor: str) -> tuple[BlacklistEntry, bool]:
        """Add or update an entry; returns it and whether it is new."""
        canonical, domain, path = canonical_entry(entry)
        created = [False]

        def change(blacklist: Blacklist) -> tuple[Blacklist, BlacklistChange]:
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
        canonical, _, _ = canonical_entry(entry)

        def change(blacklist: Blacklist) -> tuple[Blacklist, BlacklistChange]:
            entries = [e for e in blacklist.entries if e.entry != canonical]
            if len(entries) == len(blacklist.entries):
                raise EntryNotFound(canonical)
            revision = blacklist.revision + 1
            return (Blacklist(entries=entries, revision=revision),
                    BlacklistChange(revision=revision, action=ChangeAction.remove, entry=canonical, reason=reason,
                                    actor=actor, at=datetime.now(UTC)))

        return self._update(change)[0]
