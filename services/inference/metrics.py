"""The inference service's own Prometheus metrics, beside the request metrics every service has."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import HttpMetrics

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class InferenceMetrics(HttpMetrics):
    def __init__(self) -> None:
        super().__init__("inference")
        self.batch_size = Histogram(f"{self.prefix}_batch_size", "images per model call",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.predictions = Counter(f"{self.prefix}_predictions", "answers given", ["verdict"],
                                   registry=self.registry)
        self.swaps = Counter(f"{self.prefix}_model_swaps", "models loaded and swapped in", registry=self.registry)
        self.refusals = Counter(f"{self.prefix}_model_refusals", "promoted models refused", registry=self.registry)
        self.model_loaded = Gauge(f"{self.prefix}_model_loaded", "1 when a model is serving", registry=self.registry)

    def record_swap(self) -> None:
        self.swaps.inc()
        self.model_loaded.set(1)
