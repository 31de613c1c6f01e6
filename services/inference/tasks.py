"""The service's background tasks: a poll loop that survives a failing check, and a clean stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


async def poll_forever(check: Callable[[], Awaitable[None]], interval_s: float, what: str) -> None:
    """Run ``check`` every ``interval_s``; a failure (storage down...) is logged and tried again next time."""
    while True:
        try:
            await check()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - keep serving with what we have
            logger.exception("%s failed", what)
        await asyncio.sleep(interval_s)


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait until it has stopped."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
