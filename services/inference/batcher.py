"""Dynamic batching: concurrent requests wait at most ``max_wait_ms`` to share one model call.

The wait only happens while other requests are still being decoded (``arriving``): a lone request runs
at once, so batching costs nothing at concurrency 1.

One dedicated thread runs the model, so batches never compete with each other for the CPU while
the event loop keeps accepting requests and decoding images (in other threads) for the next batch.
Each batch reads the current model once, so a hot swap never changes the model under a running batch.
(The relevance gate reads each photo in its decoding thread, before it reaches the batcher: see predictor.py.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from services.inference.model import ServedModel
from services.inference.tasks import stop_task

logger = logging.getLogger(__name__)


class NoModel(RuntimeError):
    """No promoted model is loaded yet."""


@dataclass
class Scored:
    probabilities: np.ndarray  # calibrated (softmax of logits / the model's temperature)
    novelty: float | None  # kNN distance / the model's threshold; None when the model has no bank
    model: ServedModel
    logits: np.ndarray  # uncalibrated: an observation's photos are combined on these (shared/observations.py)


@dataclass
class _Pending:
    image: np.ndarray
    future: asyncio.Future[Scored]


class DynamicBatcher:
    def __init__(self, current_model: Callable[[], ServedModel | None], max_batch_size: int, max_wait_ms: float,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self._current_model = current_model
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._task: asyncio.Task[None] | None = None
        self.arriving = 0  # requests still decoding: worth waiting for, up to max_wait_ms

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dynamic-batcher")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def score(self, image: np.ndarray) -> Scored:
        """The model's reading of one model-input image, computed in a batch with concurrent callers."""
        future: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(image, future))
        return await future

    async def _collect(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            if self.arriving <= 0:
                break  # nobody else is on the way: waiting would only add latency
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return [item for item in batch if not item.future.done()]  # drop callers that went away

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            model = self._current_model()
            if model is None:
                for item in batch:
                    item.future.set_exception(NoModel("no promoted model is loaded"))
                continue
            try:
                scored = await loop.run_in_executor(self._executor, _score_batch, model, batch)
            except Exception as exc:  # noqa: BLE001 - fail this batch's callers, keep serving
                logger.exception("batch of %d failed on model %s", len(batch), model.model_id)
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            if self._on_batch:
                self._on_batch(len(batch))
            for item, result in zip(batch, scored, strict=True):
                if not item.future.done():
                    item.future.set_result(result)


def _score_batch(model: ServedModel, batch: list[_Pending]) -> list[Scored]:
    images = np.stack([fit(item.image, model.image_size) for item in batch])
    embedding, logits = model.score(images)
    probabilities = model.predict_from_logits(logits)
    novelty = model.novelty(embedding)
    return [Scored(probabilities[i], None if novelty is None else float(novelty[i]), model, logits[i])
            for i in range(len(batch))]


def fit(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` at ``size``: only differs when a hot swap changed the input size after decoding."""
    if image.shape[:2] == (size, size):
        return image
    resized = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)
