"""Prometheus metrics of one app instance (its own registry, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("sporeprint_inference_requests", "HTTP requests", ["endpoint", "status"],
                                registry=self.registry)
        self.latency = Histogram("sporeprint_inference_request_latency_seconds", "request latency", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.errors = Counter("sporeprint_inference_errors", "requests answered with an error", ["endpoint", "status"],
                              registry=self.registry)
        self.batch_size = Histogram("sporeprint_inference_batch_size", "images per model call",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.predictions = Counter("sporeprint_inference_predictions", "answers given", ["verdict"],
                                   registry=self.registry)
        self.swaps = Counter("sporeprint_inference_model_swaps", "models loaded and swapped in",
                             registry=self.registry)
        self.refusals = Counter("sporeprint_inference_model_refusals", "promoted models refused",
                                registry=self.registry)
        self.model_loaded = Gauge("sporeprint_inference_model_loaded", "1 when a model is serving",
                                  registry=self.registry)

    def record_swap(self) -> None:
        self.swaps.inc()
        self.model_loaded.set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
