"""The inference service: serves the promoted model at /predict, swapping models without downtime."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.inference.api.routes import health, model, page, predict
from services.inference.batcher import DynamicBatcher
from services.inference.core.config import get_inference_settings
from services.inference.fetch import make_session
from services.inference.metrics import ServiceMetrics
from services.inference.model import configure_threads
from services.inference.predictor import Predictor
from services.inference.relevance import GateHolder
from services.inference.watcher import ModelWatcher
from shared.logs import configure_logging
from shared.registry import ModelRegistry
from shared.settings import get_settings
from shared.storage import ObjectStore

logger = logging.getLogger(__name__)

ENDPOINTS = frozenset({"/", "/predict", "/predict/batch", "/model", "/health", "/ready", "/metrics"})


def operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


class RequestMetrics:
    """Counts requests and errors and times them per endpoint (unknown paths share one label)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            self.metrics.requests.labels(endpoint, str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(endpoint, str(status)).inc()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Tests override these dependencies; the lifespan honours the same overrides.
    settings = app.dependency_overrides.get(get_settings, get_settings)()
    inference = app.dependency_overrides.get(get_inference_settings, get_inference_settings)()
    configure_logging(settings.log_level)
    threads = configure_threads(inference.tf_intra_op_threads)
    logger.info("TensorFlow intra-op threads: %s", threads or "default")
    metrics: ServiceMetrics = app.state.metrics
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
    app = FastAPI(
        title="sporeprint inference",
        summary="Identify a mushroom species from a photo (never eat a mushroom on the strength of a model).",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    metrics = ServiceMetrics()
    app.state.metrics = metrics
    app.add_middleware(RequestMetrics, metrics=metrics)
    for router in (predict.router, model.router, health.router, page.router):
        app.include_router(router)
    return app


app = create_app()
