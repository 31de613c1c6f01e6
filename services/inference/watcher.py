"""Watch the promoted pointer and swap the served model atomically.

The swap is one reference assignment: requests already batched finish on the old model, the next
batch reads the new one. A model that fails to load or to pass its smoke prediction is refused and
remembered (so it is not retried every poll) while the old model keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from services.inference.model import ModelRefused, ServedModel, load_served_model
from services.inference.tasks import poll_forever, stop_task
from shared.registry import ModelRegistry, PromotedPointer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    model_id: str
    promoted_at: datetime
    reason: str


class ModelWatcher:
    def __init__(self, registry: ModelRegistry, poll_interval_s: float, cache_dir: str = "",
                 on_swap: Callable[[ServedModel], None] | None = None,
                 on_refuse: Callable[[Refusal], None] | None = None) -> None:
        self.registry = registry
        self.poll_interval_s = poll_interval_s
        self.cache_dir = cache_dir
        self.current: ServedModel | None = None
        self.refused: Refusal | None = None
        self._on_swap = on_swap
        self._on_refuse = on_refuse
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(poll_forever(self.check, self.poll_interval_s, "checking the promoted model"),
                                         name="model-watcher")

    async def stop(self) -> None:
        await stop_task(self._task)

    async def check(self) -> None:
        """Load the promoted model if it is not the one served (and not already refused)."""
        pointer: PromotedPointer | None = await asyncio.to_thread(self.registry.promoted)
        if pointer is None or self._is_current(pointer) or self._was_refused(pointer):
            return
        logger.info("loading promoted model %s", pointer.model_id)
        try:
            model = await asyncio.to_thread(
                load_served_model, self.registry, pointer.model_id, pointer.promoted_at, self.cache_dir
            )
        except ModelRefused as exc:
            self.refused = Refusal(pointer.model_id, pointer.promoted_at, str(exc))
            logger.error("refused promoted model %s: %s; still serving %s", pointer.model_id, exc,
                         self.current.model_id if self.current else "nothing")
            if self._on_refuse:
                self._on_refuse(self.refused)
            return
        previous, self.current = self.current, model
        logger.info("now serving %s (was %s)", model.model_id, previous.model_id if previous else "nothing")
        if self._on_swap:
            self._on_swap(model)

    def _is_current(self, pointer: PromotedPointer) -> bool:
        return self.current is not None and self.current.model_id == pointer.model_id

    def _was_refused(self, pointer: PromotedPointer) -> bool:
        return (self.refused is not None and self.refused.model_id == pointer.model_id
                and self.refused.promoted_at == pointer.promoted_at)
