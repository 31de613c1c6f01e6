"""Dynamic batching with a fake model: grouping, the size cap, swaps between batches, failures."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from services.inference.batcher import DynamicBatcher, NoModel

pytestmark = pytest.mark.unit


class FakeModel:
    """Answers each image's mean pixel value as a 'probability', and records its batch sizes."""

    def __init__(self, model_id: str, image_size: int = 4, fail: bool = False) -> None:
        self.model_id = model_id
        self.image_size = image_size
        self.fail = fail
        self.batches: list[int] = []

    def score(self, batch: np.ndarray) -> tuple[None, np.ndarray]:
        if self.fail:
            raise RuntimeError("broken graph")
        self.batches.append(len(batch))
        return None, batch.mean(axis=(1, 2))

    def predict_from_logits(self, logits: np.ndarray) -> np.ndarray:
        return logits

    def novelty(self, embedding: None) -> None:
        return None


def image(value: float, size: int = 4) -> np.ndarray:
    return np.full((size, size, 3), value, np.float32)


async def test_concurrent_requests_share_batches_capped_at_max_size() -> None:
    model = FakeModel("m")
    sizes: list[int] = []
    batcher = DynamicBatcher(lambda: model, max_batch_size=4, max_wait_ms=50, on_batch=sizes.append)  # type: ignore[arg-type,return-value]
    tasks = [asyncio.ensure_future(batcher.score(image(i))) for i in range(10)]
    await asyncio.sleep(0)  # all ten are queued before the batcher runs
    batcher.start()
    try:
        results = await asyncio.gather(*tasks)
    finally:
        await batcher.stop()
    assert [float(r.probabilities[0]) for r in results] == [float(i) for i in range(10)]  # each caller its own row
    assert model.batches == [4, 4, 2] and sizes == [4, 4, 2]


async def test_a_swap_applies_to_the_next_batch() -> None:
    models: dict[str, Any] = {"current": FakeModel("old")}
    batcher = DynamicBatcher(lambda: models["current"], max_batch_size=8, max_wait_ms=1)
    batcher.start()
    try:
        first = await batcher.score(image(1))
        models["current"] = FakeModel("new", image_size=2)  # a new model with another input size
        second = await batcher.score(image(3))  # decoded for the old size: resized for the new model
    finally:
        await batcher.stop()
    assert first.model.model_id == "old" and second.model.model_id == "new"
    assert float(second.probabilities[0]) == pytest.approx(3.0)


async def test_no_model_and_failing_model_fail_only_their_callers() -> None:
    models: dict[str, Any] = {"current": None}
    batcher = DynamicBatcher(lambda: models["current"], max_batch_size=8, max_wait_ms=1)
    batcher.start()
    try:
        with pytest.raises(NoModel):
            await batcher.score(image(1))
        models["current"] = FakeModel("broken", fail=True)
        with pytest.raises(RuntimeError, match="broken graph"):
            await batcher.score(image(1))
        models["current"] = FakeModel("fine")
        assert (await batcher.score(image(2))).model.model_id == "fine"  # the batcher survived
    finally:
        await batcher.stop()
