"""The blacklist a harvest obeys: the curator's, else the last copy it gave us, else the seed list."""

from __future__ import annotations

import asyncio
import logging

from shared.clients import ServiceError
from shared.clients.curator import CuratorClient
from shared.curation import Blacklist, seed_blacklist
from shared.storage import ObjectNotFound, ObjectStore

logger = logging.getLogger(__name__)


def _from_curator(curator_url: str, timeout_s: float) -> Blacklist:
    with CuratorClient(curator_url, timeout_s=timeout_s) as curator:
        return curator.blacklist()


async def load_blacklist(curator_url: str, store: ObjectStore, cache_key: str,
                         timeout_s: float = 5.0) -> tuple[Blacklist, str]:
    """The blacklist and where it came from: "curator", "cache" or "seed"."""
    try:
        blacklist = await asyncio.to_thread(_from_curator, curator_url, timeout_s)
    except ServiceError as exc:
        logger.warning("curator unavailable (%s): using the cached blacklist", exc)
    else:
        try:
            await asyncio.to_thread(store.put_json, cache_key, blacklist.model_dump(mode="json"))
        except Exception:  # noqa: BLE001 - a failed cache write must not stop the harvest
            logger.exception("could not cache the blacklist at %s", cache_key)
        return blacklist, "curator"
    try:
        cached = await asyncio.to_thread(store.get_json, cache_key)
        return Blacklist.model_validate(cached), "cache"
    except ObjectNotFound:
        logger.warning("no cached blacklist at %s: using the seed list", cache_key)
    except ValueError as exc:
        logger.warning("cached blacklist at %s is unreadable (%s): using the seed list", cache_key, exc)
    return seed_blacklist(), "seed"
