"""The relevance gate as /predict uses it: the shared model (shared/relevance/), with the curator's latest
probe re-read from the bucket every ``probe_poll_interval_s``, so both services judge with the same gate."""

from __future__ import annotations

import asyncio
import logging

from services.inference.tasks import poll_forever, stop_task
from shared.relevance.gate import RelevanceGate, load_gate
from shared.relevance.store import load_probe
from shared.settings import Settings
from shared.storage import ObjectStore

logger = logging.getLogger(__name__)


class GateHolder:
    """The gate in force; :meth:`refresh` swaps in a new probe by one reference assignment."""

    def __init__(self, gate: RelevanceGate, store: ObjectStore, poll_interval_s: float) -> None:
        self.current = gate
        self.store = store
        self.poll_interval_s = poll_interval_s
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def load(cls, settings: Settings, store: ObjectStore, poll_interval_s: float) -> GateHolder:
        gate = load_gate(settings.relevance_pretrained, settings.work_dir, settings.relevance_prior_log_odds)
        return cls(gate, store, poll_interval_s)

    async def refresh(self) -> None:
        probe = await asyncio.to_thread(load_probe, self.store)
        current = self.current.probe
        if (probe is None) != (current is None) or (probe and current and probe.version != current.version):
            self.current = self.current.with_probe(probe)
            logger.info("relevance gate now %s", self.current.version)

    def start(self) -> None:
        poll = poll_forever(self.refresh, self.poll_interval_s, "reading the relevance probe")
        self._task = asyncio.create_task(poll, name="relevance-probe-watcher")

    async def stop(self) -> None:
        await stop_task(self._task)
