"""The inference service: serves the promoted model at /predict, swapping models without downtime.
``uvicorn services.inference.main:app --port 8004``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.inference.api.routes import model, page, predict, readiness
from services.inference.batcher import DynamicBatcher
from services.inference.core.config import get_inference_settings
from services.inference.fetch import make_session
from services.inference.metrics import InferenceMetrics
from services.inference.model import configure_threads
from services.inference.predictor import Predictor
from services.inference.relevance import GateHolder
from services.inference.watcher import ModelWatcher
from shared.api import service_app
from shared.registry import ModelRegistry
from shared.settings import get_settings
from shared.storage import ObjectStore

logger = logging.getLogger(__name__)


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[None]:
    """The model watcher, the batcher, the relevance gate and the URL session, for the app's lifetime."""
    # Tests override these dependencies; the lifespan honours the same overrides.
    settings = app.dependency_overrides.get(get_settings, get_settings)()
    inference = app.dependency_overrides.get(get_inference_settings, get_inference_settings)()
    threads = configure_threads(inference.tf_intra_op_threads)
    logger.info("TensorFlow intra-op threads: %s", threads or "default")
    metrics: InferenceMetrics = app.state.metrics
    store = ObjectStore.from_settings(settings)
    registry = ModelRegistry(store)
    gate = GateHolder.load(settings, store, inference.probe_poll_interval_s) if inference.relevance_gate else None
    watcher = ModelWatcher(
        registry, inference.poll_interval_s, inference.model_cache_dir,
        on_swap=lambda _: metrics.record_swap(),
        on_refuse=lambda _: metrics.refusals.inc(),
    )
    batcher = DynamicBatcher(lambda: watcher.current, inference.max_batch_size, inference.max_wait_ms,
                             on_batch=metrics.batch_size.observe)
    session = make_session(inference.allow_loopback_urls, inference.url_timeout_s)
    app.state.predictor = Predictor(inference, watcher, batcher, session, gate, metrics)
    batcher.start()
    if gate is not None:
        gate.start()
    watcher.start()  # its first check loads the promoted model; /ready turns true when it is in
    try:
        yield
    finally:
        await watcher.stop()
        if gate is not None:
            await gate.stop()
        await batcher.stop()
        await session.close()


def create_app() -> FastAPI:
    return service_app(
        "inference", (predict.router, model.router, readiness.router, page.router),
        summary="Identify a mushroom species from a photo (never eat a mushroom on the strength of a model).",
        lifespan=serving, metrics=InferenceMetrics(),
    )


app = create_app()
